"""Built-in synthetic person re-ID domains in Market-1501's exact layout (no download needed).

``generate_domain(root, "SynthA")`` writes ``<root>/SynthA/{bounding_box_train,bounding_box_test,
query}/{pid:04d}_c{cam}s1_{frame:06d}_00.jpg`` (cam 1-based) plus ``meta.json``; fast-reid's own
Market1501 parser reads it (``canu_plugin.data.datasets`` registers ``SynthA`` / ``SynthB``).

What the data reproduces (SPEC, "What the built-in synthetic data must give"):

- identity = fixed appearance attributes (upper/lower colours, upper pattern, sleeves, shorts or
  skirt, hair, bag, shoes, build), drawn procedurally with numpy; every image jitters pose, scale,
  translation, aspect, colours and lighting, so images of one id differ;
- camera shift, scaled by ``camera_shift`` in [0, 1]: per camera a colour cast (RGB gains),
  brightness, contrast, blur, noise, background (wall/floor colours, horizon, texture) and
  viewpoint (front/back and mirror preference, person scale and vertical offset). At 0 all
  cameras share one neutral set-up; at 1 features cluster by camera;
- camera-dependent identities: each id walks through a contiguous, cyclic window of cameras of
  length ``C - id_camera_correlation * (C - 2)`` on average (``0``: every id in every camera,
  ``1``: every id in exactly two cameras);
- two domains with different appearance statistics (``DOMAIN_PRESETS``: clothing palettes,
  backgrounds, lighting, framing, number of cameras, each with its own camera shifts), and a broad
  pre-training style (``SynthPre``);
- optional camera effects beyond colour (``camera_effects``, :mod:`.synthetic_effects`): viewpoint,
  pose, occlusion, resolution and illumination per camera; off by default;
- optional knobs for camera-split but recoverable identities, each off by default (:mod:`.synthetic_knobs`,
  :mod:`.synthetic_detail`): ``identity_detail`` (patterns, prints, accessories, look-alike families),
  ``shared_detail_vocabulary``, ``visits`` (within-camera tracks), ``camera_gaps`` (near-twin and
  distant cameras), ``camera_low_level`` (white balance, noise, JPEG, resolution, body angle).

Split rules (as in Market-1501): train and test ids are disjoint; per test id, the first image of
each camera it visits is a query and the others (>= 1 per camera) are gallery, so every query has
a gallery match in another camera; ``num_distractors`` partial-person gallery images get pid 0.
Same arguments and seed give byte-identical files. fast-reid's Market1501 parser asserts
``1 <= camid <= 6`` and ``pid <= 1501``, so at most 6 cameras and 1501 ids are allowed.
"""
import colorsys
import json
import os
import shutil
import tempfile
import time
import zlib

import numpy as np
from PIL import Image

from canu_plugin.data.synthetic_draw import render
from canu_plugin.data.synthetic_effects import effect_strengths, sample_effects, with_effects
from canu_plugin.data.synthetic_knobs import image_streams, jpeg_quality, knob_args, with_knobs
from canu_plugin.data.synthetic_styles import DOMAIN_PRESETS
from canu_plugin.errors import CanuError

SPLITS = ("bounding_box_train", "bounding_box_test", "query")
FORMAT_VERSION = 1
MAX_CAMERAS, MAX_PID = 6, 1501  # limits of fast-reid's Market1501.process_dir
SKIN = np.array([[0.95, 0.8, 0.68], [0.85, 0.65, 0.5], [0.65, 0.45, 0.32], [0.42, 0.28, 0.2]])


def _colour(rng, spec):
    """One RGB colour in [0, 1], shape (3,), from a ``[h0, h1, s0, s1, v0, v1, p_grey]`` range."""
    h0, h1, s0, s1, v0, v1, p_grey = spec
    grey, hue, sat, val = rng.random() < p_grey, rng.uniform(h0, h1), rng.uniform(s0, s1), rng.uniform(v0, v1)
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, 0.0 if grey else sat, val))


def sample_identity(rng, style):
    """Appearance attributes of one person (a dict of RGB arrays of shape (3,), flags and floats)."""
    return {
        "upper": _colour(rng, style["upper"]), "second": _colour(rng, style["upper"]),
        "lower": _colour(rng, style["lower"]), "shoes": _colour(rng, [0, 1, 0, 0.3, 0.05, 0.8, 0.6]),
        "hair": _colour(rng, [0.03, 0.12, 0.3, 0.8, 0.05, 0.6, 0.2]), "bag_colour": _colour(rng, style["upper"]),
        "skin": SKIN[rng.integers(len(SKIN))] + rng.uniform(-0.04, 0.04, 3),
        "short_sleeves": rng.random() < style["p_short_sleeves"], "long_hair": rng.random() < style["p_long_hair"],
        "lower_kind": int(rng.choice(3, p=[1 - style["p_shorts"] - style["p_skirt"], style["p_shorts"],
                                            style["p_skirt"]])),
        "bag": int(rng.choice(4, p=style["p_bag"])), "pattern": int(rng.choice(5, p=style["p_pattern"])),
        "build": rng.uniform(0.85, 1.15), "height": rng.uniform(0.93, 1.04),
    }


def sample_camera(rng, style, strength):
    """One camera's imaging set-up, mixed with the domain's neutral set-up by ``strength`` in [0, 1].

    ``style["camera"]`` holds the ranges at full strength: RGB gain deviation, brightness and
    contrast ranges, maximum blur sigma (pixels at H=128) and noise std, texture amplitude.
    """
    s, r = float(strength), style["camera"]
    neutral = {k: np.array(colorsys.hsv_to_rgb((style[k][0] + style[k][1]) / 2 % 1.0, (style[k][2] + style[k][3]) / 4,
                                               (style[k][4] + style[k][5]) / 2)) for k in ("wall", "floor")}
    return {
        "gains": 1 + s * rng.uniform(-r["gain"], r["gain"], 3), "bright": s * rng.uniform(*r["bright"]),
        "contrast": 1 + s * rng.uniform(*r["contrast"]), "blur": s * rng.uniform(0.0, r["blur"]),
        "noise": s * rng.uniform(0.0, r["noise"]), "texture": int(rng.integers(3)),
        "tex_amp": s * rng.uniform(0.3, 1.0) * r["texture"], "tex_period": rng.uniform(0.12, 0.4),
        "horizon": 0.7 + s * rng.uniform(-0.2, 0.15),
        "wall": (1 - s) * neutral["wall"] + s * _colour(rng, style["wall"]),
        "floor": (1 - s) * neutral["floor"] + s * _colour(rng, style["floor"]),
        "p_back": 0.5 + s * (rng.choice([0.4, -0.4])), "p_mirror": 0.5 + s * rng.choice([0.45, -0.45]),
        "scale": 1 + s * rng.uniform(-0.12, 0.08), "shift_y": s * rng.uniform(-0.05, 0.05),
    }


# ---------------------------------------------------------------- layout, files and meta.json
def _walks(rng, n, C, corr):
    """Cameras visited by each of ``n`` ids: list of int arrays (0-based), contiguous cyclic windows."""
    mean = C - corr * (C - 2)
    lengths = np.rint(mean + (rng.uniform(-1, 1, n) if 0 < corr < 1 else np.zeros(n)))
    starts = rng.integers(0, C, n)
    return [np.sort((s + np.arange(int(np.clip(L, 2, C)))) % C) for s, L in zip(starts, lengths)]


def _plan_domain(args):
    """The images of a domain: list of (folder, pid, camera 0-based, frame, partial) tuples."""
    rng = np.random.default_rng([args["seed"], zlib.crc32(args["name"].encode()), 0])
    n_tr, n_te, C = args["num_train_ids"], args["num_test_ids"], args["num_cameras"]
    pids = rng.permutation(np.arange(1, n_tr + n_te + 1))
    lo, hi = args["images_per_camera"]
    rows = []
    for test, ids in ((False, sorted(pids[:n_tr])), (True, sorted(pids[n_tr:]))):
        for pid, cams in zip(ids, _walks(rng, len(ids), C, args["id_camera_correlation"])):
            for cam in cams:
                n = int(rng.integers(lo, hi + 1))
                for k in range(max(n, 2) if test else n):
                    folder = "bounding_box_train" if not test else "query" if k == 0 else "bounding_box_test"
                    rows.append((folder, int(pid), int(cam), False))
    rows += [("bounding_box_test", 0, int(rng.integers(C)), True) for _ in range(args["num_distractors"])]
    return [(f, pid, cam, i + 1, part) for i, (f, pid, cam, part) in enumerate(rows)]


def _pair(value, what, name):
    """Two ints from a (lo, hi) or (H, W) argument; CanuError otherwise."""
    try:
        a, b = (int(v) for v in value)
    except (TypeError, ValueError):
        raise CanuError(f"bad arguments for synthetic domain {name!r}: {what} must be two integers, "
                        f"got {value!r}") from None
    return a, b


def _domain_args(name, style, seed, **kw):
    """Validated, JSON-normalised generator arguments (the content of meta.json's "args")."""
    style = style or name
    if style not in DOMAIN_PRESETS:
        raise CanuError(f"unknown synthetic domain style {style!r} for {name!r}: pass style= one of "
                        f"{sorted(DOMAIN_PRESETS)} (or name the domain after one of them)")
    preset = DOMAIN_PRESETS[style]
    cameras = kw.pop("num_cameras")
    C = int(preset["num_cameras"] if cameras is None else cameras)
    lo, hi = _pair(kw["images_per_camera"], "images_per_camera", name)
    H, W = _pair(kw["image_size"], "image_size", name)
    problems = [f"num_cameras={C} must be in 2..{MAX_CAMERAS} (fast-reid's Market1501 parser accepts c1..c6)"
                * (not 2 <= C <= MAX_CAMERAS),
                f"num_train_ids + num_test_ids must be in 2..{MAX_PID} (fast-reid's Market1501 pid limit)"
                * (not (kw["num_train_ids"] >= 1 and kw["num_test_ids"] >= 1
                        and kw["num_train_ids"] + kw["num_test_ids"] <= MAX_PID)),
                "images_per_camera must be (lo, hi) with 1 <= lo <= hi" * (not 1 <= lo <= hi),
                "camera_shift must be in [0, 1]" * (not 0 <= kw["camera_shift"] <= 1),
                "id_camera_correlation must be in [0, 1]" * (not 0 <= kw["id_camera_correlation"] <= 1),
                "num_distractors must be >= 0" * (kw["num_distractors"] < 0),
                "image_size must be (H, W) with H >= 16 and W >= 8" * (not (H >= 16 and W >= 8))]
    problems = [p for p in problems if p]
    if problems:
        raise CanuError(f"bad arguments for synthetic domain {name!r}: " + "; ".join(problems))
    effects = effect_strengths(kw.pop("camera_effects", None), name)  # recorded only when on (old meta.json match)
    knobs = knob_args(kw, name, C)  # the same: only those that are on
    args = dict(kw, **({"camera_effects": effects} if effects else {}), **knobs, name=name, style=style,
                seed=int(seed), num_cameras=C, images_per_camera=[lo, hi],
                image_size=[H, W], preset=preset, format_version=FORMAT_VERSION)
    return json.loads(json.dumps(args))


def _count_images(dest):
    """Number of .jpg files per split folder of ``dest`` (dict folder -> int)."""
    return {s: len([f for f in os.listdir(os.path.join(dest, s)) if f.endswith(".jpg")])
            if os.path.isdir(os.path.join(dest, s)) else 0 for s in SPLITS}


def _existing(dest, args, count=None, what="images"):
    """The stats in ``dest``'s meta.json when it holds exactly this generation, None when ``dest`` is
    absent or empty; raises CanuError when it holds something else. ``count(dest)`` (default: images
    per split folder) must equal ``stats[what]``."""
    if not os.path.isdir(dest) or not os.listdir(dest):
        return None
    fix = f"pass overwrite=True (tools/make_synthetic.py --overwrite), which deletes {dest}, or choose another --root"
    try:
        with open(os.path.join(dest, "meta.json")) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        raise CanuError(f"{dest} is not empty and has no readable meta.json (not generated by "
                        f"canu-plugin's synthetic generator, or generation was interrupted): {fix}") from None
    if meta.get("args") != args:
        diff = sorted(k for k in set(args) | set(meta.get("args", {})) if args.get(k) != meta.get("args", {}).get(k))
        raise CanuError(f"{dest} was generated with different arguments ({', '.join(diff)}): {fix}")
    counts = (count or _count_images)(dest)
    if counts != meta["stats"][what]:
        raise CanuError(f"{dest} has {counts} {what} but its meta.json lists {meta['stats'][what]}: {fix}")
    return meta["stats"]


def _write_images(folder, args):
    """Render and save every image of the plan under ``folder``; returns the stats dict."""
    seed, crc = args["seed"], zlib.crc32(args["name"].encode())
    style, size = args["preset"], tuple(args["image_size"])
    id_rng, cam_rng = np.random.default_rng([seed, crc, 1]), np.random.default_rng([seed, crc, 2])
    n_ids = args["num_train_ids"] + args["num_test_ids"]
    idents = {pid: sample_identity(id_rng, style) for pid in range(1, n_ids + 1)}
    cams = [sample_camera(cam_rng, style, args["camera_shift"]) for _ in range(args["num_cameras"])]
    if args.get("camera_effects"):
        fx_rng = np.random.default_rng([seed, crc, 4])
        cams = [with_effects(c, sample_effects(fx_rng, args["camera_effects"])) for c in cams]
    cams = with_knobs(cams, args)
    for s in SPLITS:
        os.makedirs(os.path.join(folder, s))
    plan = _plan_domain(args)
    if args.get("identity_detail"):
        from canu_plugin.data.synthetic_detail import add_detail
        ids = {s: {p for f, p, *_ in plan if f == s and p > 0} for s in SPLITS}
        add_detail(idents, args, ids["bounding_box_train"], ids["query"])
    for split, pid, cam, frame, partial in plan:
        rng, effect_rng, knob_rng = image_streams(args, pid, cam, frame)
        ident = sample_identity(rng, style) if pid == 0 else idents[pid]
        img = render(ident, cams[cam], style, rng, size, partial=partial, effect_rng=effect_rng, knob_rng=knob_rng)
        name = f"{pid:04d}_c{cam + 1}s1_{frame:06d}_00.jpg"
        Image.fromarray(img).save(os.path.join(folder, split, name), quality=jpeg_quality(cams[cam]))
    ids = {s: sorted({p for f, p, *_ in plan if f == s and p > 0}) for s in SPLITS}
    return {"num_train_ids": len(ids["bounding_box_train"]), "num_test_ids": len(ids["query"]),
            "num_cameras": args["num_cameras"], "distractors": args["num_distractors"],
            "images": {s: sum(f == s for f, *_ in plan) for s in SPLITS}}


def generate_domain(root, name, *, num_train_ids=100, num_test_ids=100, num_cameras=None,
                    images_per_camera=(2, 5), camera_shift=0.8, id_camera_correlation=0.6,
                    num_distractors=20, image_size=(128, 64), style=None, seed=0, overwrite=False,
                    camera_effects=None, identity_detail=None, shared_detail_vocabulary=False, visits=0.0,
                    camera_gaps=None, camera_low_level=None):
    """Write domain ``name`` under ``<root>/<name>/`` in Market-1501 layout (skipped if already there).

    ``num_cameras`` None takes the style's preset (``DOMAIN_PRESETS[style or name]``); ``image_size``
    is (H, W); ``camera_effects``: {effect: strength in [0, 1]} of :mod:`.synthetic_effects`
    (viewpoint, pose, occlusion, resolution, illumination; None / zeros: off, the same bytes as without).
    ``identity_detail``, ``shared_detail_vocabulary``, ``visits``, ``camera_gaps``, ``camera_low_level``:
    :mod:`.synthetic_knobs` (off by default: the same bytes as without). Returns stats: ids, cameras,
    images per split folder, path, seconds, skipped.
    Raises CanuError for bad arguments, or when the folder holds a different generation and
    ``overwrite`` is False.
    """
    t0 = time.time()
    args = _domain_args(name, style, seed, num_train_ids=int(num_train_ids), num_test_ids=int(num_test_ids),
                        num_cameras=num_cameras, images_per_camera=images_per_camera, camera_shift=float(camera_shift),
                        id_camera_correlation=float(id_camera_correlation), num_distractors=int(num_distractors),
                        image_size=image_size, camera_effects=camera_effects, identity_detail=identity_detail,
                        shared_detail_vocabulary=shared_detail_vocabulary, visits=visits, camera_gaps=camera_gaps,
                        camera_low_level=camera_low_level)
    stats, dest, skipped = write_domain(root, name, args, _write_images, overwrite)
    return dict(stats, name=name, path=dest, seconds=round(time.time() - t0, 2), skipped=skipped)


def write_domain(root, name, args, write, overwrite=False, existing=None, generator=__name__):
    """Generate ``<root>/<name>`` unless it holds this generation already: ``write(folder, args)``
    (returns stats) fills a temporary folder, published in one rename with a ``meta.json`` (an
    interrupted or concurrent generation never leaves a half-written domain).

    Args:
        args: the generation's arguments (stored, and compared by ``existing``); existing:
            ``existing(dest, args)`` -> stats of the same generation, None when absent (default:
            the image domains' check); generator: module name recorded in meta.json.
    Returns:
        (stats, dest, skipped). Raises CanuError when the folder holds another generation and
        ``overwrite`` is False, or when ``root`` is a file.
    """
    existing = existing or _existing
    dest = os.path.join(os.fspath(root), name)
    stats = None if overwrite else existing(dest, args)
    if stats is not None:
        return stats, dest, True
    if os.path.exists(root) and not os.path.isdir(root):
        raise CanuError(f"dataset root {root} is a file, not a folder: pass --root with a folder path")
    os.makedirs(root, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=root)
    try:
        os.chmod(tmp, 0o755)
        stats = write(tmp, args)
        with open(os.path.join(tmp, "meta.json"), "w") as f:
            json.dump({"generator": generator, "args": args, "stats": stats}, f, indent=1, sort_keys=True)
        skipped = _publish(tmp, dest, args, overwrite, existing)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return stats, dest, skipped


def _publish(tmp, dest, args, overwrite, existing=None):
    """Move the finished folder ``tmp`` to ``dest`` in one rename. Returns True (and keeps ``dest``)
    when another process published the same generation meanwhile (``existing(dest, args)``, default
    this module's check, says so)."""
    if not overwrite and (existing or _existing)(dest, args) is not None:
        return True
    if os.path.isdir(dest):  # empty, or overwrite=True
        shutil.rmtree(dest)
    os.rename(tmp, dest)
    return False


def generate_all(root, names=("SynthA", "SynthB"), seed=0, overwrite=False, **kwargs):
    """:func:`generate_domain` for each name (same keyword arguments); returns {name: stats}."""
    return {n: generate_domain(root, n, seed=seed, overwrite=overwrite, **kwargs) for n in names}
