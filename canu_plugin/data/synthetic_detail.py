"""Identity detail of the synthetic generator: what tells two similar people apart across cameras.

``identity_detail`` (an argument of :func:`canu_plugin.data.synthetic.generate_domain`) adds, per
identity, detail drawn in *body coordinates* (it moves, scales and turns with the person, before the
camera acts), so it survives a change of camera:

- ``pattern`` (share of identities): a patterned top: horizontal or vertical stripes, checks, dots,
  or two-tone (diagonal, side or yoke); the second colour is the top's colour turned by 120-240
  degrees of hue (always well apart), the period is the identity's own;
- ``logo`` (share): a print (disc, square, diamond, cross or text bars) at an identity-specific place
  (chest left / centre / right, belly, thigh) in a print colour that contrasts with the top, on the
  front and on the back;
- ``accessories`` (strength): a hat (cap or beanie), a scarf and a bag hung on one side (each with
  probability strength / 2, colours from the domain's palette) and vivid shoes (probability strength);
- ``lookalike_families`` (family size, int; 0 or 1 off): the identities of each split are grouped in
  families of that size whose members share every global attribute (colours, clothes, hair, build,
  bag) with the family's first member and differ only in the detail above.

The *vocabulary* (which patterns, logo shapes, places, print and shoe colours, and how often) is a
fixed list; with ``shared_detail_vocabulary`` every style (SynthA, SynthB, SynthPre) draws from it
with the same frequencies, so the domain gap is palette and style only; without it each style
weights the list its own way (a fixed Dirichlet draw per style name). Colours of patterns and
accessories always come from the domain's palette.

Every draw comes from streams of its own (per identity ``[seed, crc, 13, pid]``, families
``[seed, crc, 14]``), of a fixed length whatever the strengths, so the existing draws never move.
"""
import colorsys
import zlib

import numpy as np

from canu_plugin.data.synthetic_draw import _box, _capsule, _ellipse, _paint
from canu_plugin.errors import CanuError

DETAIL_KEYS = ("pattern", "logo", "accessories", "lookalike_families")
PATTERNS = ("hstripes", "vstripes", "checks", "dots", "two_tone")
LOGO_SHAPES = ("disc", "square", "diamond", "cross", "bars")
LOGO_PLACES = {"chest_left": (0.25, -0.06), "chest_centre": (0.27, 0.0), "chest_right": (0.25, 0.06),
               "belly": (0.39, 0.0), "thigh": (0.62, 0.055)}  # (y, x) in person heights, x on the person's side
PRINT_COLOURS = np.array([[0.97, 0.97, 0.95], [0.08, 0.08, 0.1], [0.9, 0.12, 0.12], [0.98, 0.85, 0.1],
                          [0.1, 0.35, 0.9], [0.1, 0.7, 0.25], [0.98, 0.5, 0.05]])
SHOE_COLOURS = np.array([[0.97, 0.97, 0.97], [0.85, 0.1, 0.1], [0.1, 0.3, 0.85], [0.95, 0.8, 0.1],
                         [0.1, 0.75, 0.6]])


def detail_strengths(value, name):
    """Validated ``identity_detail``: {} when off (None, False, 0, all zeros), else a dict with every
    key of :data:`DETAIL_KEYS` (a number s in [0, 1] or True is pattern = logo = accessories = s)."""
    bad = f"bad arguments for synthetic domain {name!r}: identity_detail"
    if value is None or value is False:
        return {}
    if not isinstance(value, dict):
        try:
            s = float(value)
        except (TypeError, ValueError):
            raise CanuError(f"{bad} must be a number in [0, 1] or a dict of {list(DETAIL_KEYS)}, "
                            f"got {value!r}") from None
        value = {"pattern": s, "logo": s, "accessories": s}
    unknown = sorted(set(value) - set(DETAIL_KEYS))
    if unknown:
        raise CanuError(f"{bad}: unknown key(s) {unknown}; the keys are {list(DETAIL_KEYS)}")
    try:
        out = {k: float(value.get(k, 0.0)) for k in DETAIL_KEYS[:3]}
        fam = value.get("lookalike_families", 0) or 0
        out["lookalike_families"] = int(fam) if int(fam) == fam else -1
    except (TypeError, ValueError):
        raise CanuError(f"{bad} values must be numbers, got {value!r}") from None
    problems = [f"{k}={v} must be in [0, 1]" for k, v in out.items() if k != "lookalike_families" and not 0 <= v <= 1]
    if not 0 <= out["lookalike_families"] <= 20:
        problems.append(f"lookalike_families must be a family size in 0..20, got {value.get('lookalike_families')!r}")
    out["lookalike_families"] *= out["lookalike_families"] >= 2  # a family of one is no family
    if out["lookalike_families"] and not any(out[k] for k in DETAIL_KEYS[:3]):
        problems.append("lookalike_families needs some detail (pattern, logo or accessories > 0), "
                        "or the members of a family are the same person")
    if problems:
        raise CanuError(f"{bad}: " + "; ".join(problems))
    return out if any(out.values()) else {}


def vocabulary(style_name, shared):
    """Frequencies of every detail kind: uniform when ``shared``, else a fixed draw of the style's own."""
    sizes = {"pattern": len(PATTERNS), "shape": len(LOGO_SHAPES), "place": len(LOGO_PLACES),
             "print": len(PRINT_COLOURS), "shoes": len(SHOE_COLOURS)}
    if shared:
        return {k: np.full(n, 1.0 / n) for k, n in sizes.items()}
    rng = np.random.default_rng([zlib.crc32(style_name.encode()), 15])
    return {k: rng.dirichlet(np.full(n, 0.7)) for k, n in sizes.items()}


def _pick(weights, u):
    """Index drawn from ``weights`` by the uniform number ``u`` (inverse CDF: no random draw of its own)."""
    return int(min(np.searchsorted(np.cumsum(weights), u * np.sum(weights), side="right"), len(weights) - 1))


def _palette_colour(rng, spec):
    """One RGB colour from a style range ``[h0, h1, s0, s1, v0, v1, p_grey]`` (4 draws, always)."""
    u = rng.random(4)
    h0, h1, s0, s1, v0, v1, p_grey = spec
    sat = 0.0 if u[0] < p_grey else s0 + (s1 - s0) * u[2]
    return np.array(colorsys.hsv_to_rgb((h0 + (h1 - h0) * u[1]) % 1.0, sat, v0 + (v1 - v0) * u[3]))


def _second_colour(upper, turn):
    """The pattern's second colour: ``upper`` turned by ``turn`` of the hue circle, saturated and visible."""
    h, s, v = colorsys.rgb_to_hsv(*np.clip(upper, 0, 1))
    return np.array(colorsys.hsv_to_rgb((h + turn) % 1.0, max(s, 0.55), float(np.clip(v, 0.4, 0.95))))


def _print_colour(vocab, u, upper):
    """A print colour from the vocabulary that contrasts with the top (the next one when too close)."""
    k = _pick(vocab["print"], u)
    for step in range(len(PRINT_COLOURS)):
        c = PRINT_COLOURS[(k + step) % len(PRINT_COLOURS)]
        if np.abs(c - upper).sum() > 0.6:
            return c
    return PRINT_COLOURS[k]


def sample_detail(rng, strengths, vocab, style, upper):
    """One identity's detail (a dict; empty parts are None) at ``strengths`` (:func:`detail_strengths`)."""
    u = rng.random(20)
    colours = [_palette_colour(rng, style["upper"]) for _ in range(3)]  # hat, scarf, bag
    s_pat, s_logo, s_acc = (strengths[k] for k in DETAIL_KEYS[:3])
    return {
        "pattern": None if u[0] >= s_pat else {
            "kind": PATTERNS[_pick(vocab["pattern"], u[1])], "period": 0.045 + 0.04 * u[2],
            "colour": _second_colour(upper, 1 / 3 + u[3] / 3), "variant": int(u[4] * 3)},
        "logo": None if u[5] >= s_logo else {
            "shape": LOGO_SHAPES[_pick(vocab["shape"], u[6])], "place": list(LOGO_PLACES)[_pick(vocab["place"], u[7])],
            "colour": _print_colour(vocab, u[8], upper), "size": 0.04 + 0.025 * u[9]},
        "hat": None if u[10] >= s_acc / 2 else {"kind": int(u[11] < 0.5), "colour": colours[0]},
        "scarf": None if u[12] >= s_acc / 2 else {"colour": colours[1]},
        "side_bag": None if u[13] >= s_acc / 2 else {"side": 1 if u[14] < 0.5 else -1, "colour": colours[2]},
        "shoes": None if u[15] >= s_acc else SHOE_COLOURS[_pick(vocab["shoes"], u[16])],
    }


def families(rng, train_ids, test_ids, size):
    """Look-alike families within each split: {pid: the pid of its family's first member}."""
    head = {}
    for ids in (sorted(train_ids), sorted(test_ids)):
        order = rng.permutation(np.asarray(ids, int)) if len(ids) else []
        for start in range(0, len(order), size):
            for pid in order[start:start + size]:
                head[int(pid)] = int(order[start])
    return head


def add_detail(idents, args, train_ids, test_ids):
    """Attach ``ident["detail"]`` to every identity of ``idents`` ({pid: attributes}, changed in place)
    per ``args["identity_detail"]``, after copying each look-alike family's global attributes."""
    seed, crc = args["seed"], zlib.crc32(args["name"].encode())
    strengths, style = args["identity_detail"], args["preset"]
    if strengths["lookalike_families"]:
        head = families(np.random.default_rng([seed, crc, 14]), train_ids, test_ids, strengths["lookalike_families"])
        for pid, first in head.items():
            idents[pid] = dict(idents[first])
    vocab = vocabulary(args["style"], args.get("shared_detail_vocabulary", False))
    for pid in sorted(idents):
        rng = np.random.default_rng([seed, crc, 13, pid])
        idents[pid] = dict(idents[pid], detail=sample_detail(rng, strengths, vocab, style, idents[pid]["upper"]))
    return idents


# ---------------------------------------------------------------- drawing, in body coordinates
def _stripes(t, px):
    """Anti-aliased 50 % square wave of the coordinate ``t`` (in periods); ``px``: pixels per period."""
    return np.clip((np.abs(t % 1.0 - 0.5) - 0.25) * px + 0.5, 0, 1)


def _pattern_mask(p, g, yy, xx):
    """(H, W) mask of the pattern ``p`` over the whole image, in the person's coordinates."""
    h, cx, y0, side = g["h"], g["cx"], g["y0"], -1 if g["back"] else 1
    P = p["period"] * h
    ty, tx = (yy - y0) / P, (xx - cx) / (P * g["bw"])
    kind = p["kind"]
    if kind == "hstripes":
        return _stripes(ty, P)
    if kind == "vstripes":
        return _stripes(tx + 0.25, P)
    if kind == "checks":
        a, b = _stripes(ty, P), _stripes(tx + 0.25, P)
        return a + b - 2 * a * b
    if kind == "dots":
        d = np.hypot((ty % 1.0 - 0.5), (tx % 1.0 - 0.5)) * P
        return np.clip(0.3 * P - d + 0.5, 0, 1)
    edge = [(yy - y0 - 0.3 * h) + side * (xx - cx), side * (xx - cx), y0 + 0.25 * h - yy][p["variant"]]
    return np.clip(edge + 0.5, 0, 1)  # two-tone: diagonal, the person's left half, or a yoke


def _logo_mask(logo, g, yy, xx):
    """(H, W) mask of the logo at its place (mirrored in the back view: the print is on both sides)."""
    h, side = g["h"], -1 if g["back"] else 1
    y, x = LOGO_PLACES[logo["place"]]
    cy, cx = g["y0"] + y * h, g["cx"] + side * x * h * g["bw"]
    if logo["place"] == "thigh":  # follows the leg's swing
        cx += side * 0.3 * g["stride"]
    r = logo["size"] * h
    shape = logo["shape"]
    if shape == "disc":
        return _ellipse(yy, xx, (cy, cx), r, r)
    if shape == "square":
        return _box(yy, xx, (cy, cx), r * 0.85, r * 0.85)
    if shape == "diamond":
        return np.clip(r - np.abs(yy - cy) - np.abs(xx - cx) + 0.5, 0, 1)
    if shape == "cross":
        return np.maximum(_box(yy, xx, (cy, cx), r, r * 0.35), _box(yy, xx, (cy, cx), r * 0.35, r))
    return sum(_box(yy, xx, (cy + k * 0.55 * r, cx), r * 0.16, r * (1 - 0.25 * (k == 1))) for k in (-1, 0, 1))


def torso(canvas, torso_mask, ident, g, yy, xx):
    """The pattern and a chest / belly logo on the torso (called by the drawing after the top is painted)."""
    d = ident["detail"]
    if d["pattern"]:
        _paint(canvas, torso_mask * _pattern_mask(d["pattern"], g, yy, xx), d["pattern"]["colour"])
    if d["logo"] and d["logo"]["place"] != "thigh":
        _paint(canvas, torso_mask * _logo_mask(d["logo"], g, yy, xx), d["logo"]["colour"])


def after_body(canvas, ident, g, yy, xx):
    """Thigh print, scarf, hat and side bag, drawn over the finished person."""
    d, h, cx, y0 = ident["detail"], g["h"], g["cx"], g["y0"]
    side = -1 if g["back"] else 1
    if d["logo"] and d["logo"]["place"] == "thigh":
        _paint(canvas, _logo_mask(d["logo"], g, yy, xx) * 0.9, d["logo"]["colour"])
    if d["scarf"]:
        _paint(canvas, _box(yy, xx, (y0 + 0.165 * h, cx), 0.028 * h, 0.075 * h * g["bw"], 0.012 * h),
               d["scarf"]["colour"])
        if not g["back"]:  # the hanging end, in front
            _paint(canvas, _box(yy, xx, (y0 + 0.24 * h, cx + 0.035 * h), 0.06 * h, 0.02 * h, 0.006 * h),
                   d["scarf"]["colour"])
    if d["hat"]:
        top = (y0 + 0.045 * h, cx)
        if d["hat"]["kind"]:  # cap with a brim (seen from the front)
            cap = _ellipse(yy, xx, top, 0.045 * h, 0.058 * h) * (yy < y0 + 0.055 * h)
            if not g["back"]:
                cap = np.maximum(cap, _box(yy, xx, (y0 + 0.052 * h, cx), 0.008 * h, 0.07 * h, 0.004 * h))
        else:  # beanie with a fold
            cap = _ellipse(yy, xx, (y0 + 0.05 * h, cx), 0.05 * h, 0.057 * h) * (yy < y0 + 0.06 * h)
        _paint(canvas, cap, d["hat"]["colour"])
    if d["side_bag"] and ident["bag"] not in (2, 3):  # the person's own bag is already on a side
        s = d["side_bag"]["side"] * side
        strap = _capsule(yy, xx, (y0 + 0.2 * h, cx - s * 0.09 * h), (y0 + 0.5 * h, cx + s * 0.15 * h), 0.012 * h)
        _paint(canvas, strap, d["side_bag"]["colour"])
        _paint(canvas, _box(yy, xx, (y0 + 0.55 * h, cx + s * 0.17 * h), 0.065 * h, 0.055 * h, 0.012 * h),
               d["side_bag"]["colour"])


__all__ = ["DETAIL_KEYS", "PATTERNS", "LOGO_SHAPES", "LOGO_PLACES", "detail_strengths", "vocabulary", "sample_detail",
           "families", "add_detail", "torso", "after_body"]
