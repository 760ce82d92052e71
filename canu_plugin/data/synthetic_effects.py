"""Camera effects of the synthetic generator beyond colour: what else a camera changes about a person.

``camera_effects`` (an argument of :func:`canu_plugin.data.synthetic.generate_domain`) maps each of
:data:`EFFECTS` to a strength in [0, 1]; a missing key or 0 is "off". Each camera draws its own
set-up once (:func:`sample_effects`) and each image a few numbers of its own (:func:`draw_image`):

- ``viewpoint``: the camera sees people mostly from the front or mostly from the back (its back-view
  probability is pushed towards 0.05 or 0.95) and from above (the person is foreshortened
  vertically by up to 35%);
- ``pose``: the camera watches people standing (small stride) or walking fast (large stride, arms
  swinging), instead of the domain-wide stride jitter;
- ``occlusion``: a share of the camera's images has the person partly hidden by a fixed-colour
  object (a low wall or car from below, a pole in front, or an object at one side);
- ``resolution``: the camera's images are down-sampled (by up to 75%) and up-sampled back;
- ``illumination``: a directional light gradient across the image and an exposure change.

All draws come from random streams of their own (per camera: ``[seed, crc, 4]``; per image:
``[seed, crc, 5, frame]``), drawn in full whatever the strengths, so with every strength 0 no
existing draw moves and the domain is byte-identical to one generated without the argument.
"""
import numpy as np
from PIL import Image

from canu_plugin.errors import CanuError

EFFECTS = ("viewpoint", "pose", "occlusion", "resolution", "illumination")


def effect_strengths(value, name):
    """Validated ``camera_effects``: {effect: float in [0, 1]} with every key of :data:`EFFECTS`, or
    {} when nothing is on (None, {} or all zeros). Raises CanuError naming the bad key or value."""
    value = dict(value or {})
    unknown = sorted(set(value) - set(EFFECTS))
    if unknown:
        raise CanuError(f"bad arguments for synthetic domain {name!r}: unknown camera effect(s) {unknown}; "
                        f"the effects are {list(EFFECTS)}")
    try:
        out = {k: float(value.get(k, 0.0)) for k in EFFECTS}
    except (TypeError, ValueError):
        raise CanuError(f"bad arguments for synthetic domain {name!r}: camera_effects values must be numbers, "
                        f"got {value!r}") from None
    bad = [k for k, v in out.items() if not 0 <= v <= 1]
    if bad:
        raise CanuError(f"bad arguments for synthetic domain {name!r}: camera effect strengths must be in [0, 1] "
                        f"({', '.join(f'{k}={out[k]}' for k in bad)})")
    return out if any(out.values()) else {}


def sample_effects(rng, strengths):
    """One camera's effect set-up (a dict of floats) at ``strengths`` (:func:`effect_strengths`)."""
    u = rng.random(12)
    s = {k: strengths.get(k, 0.0) for k in EFFECTS}
    return {
        "view": s["viewpoint"], "p_back": 0.05 if u[0] < 0.5 else 0.95,
        "squash": 1 - s["viewpoint"] * (0.1 + 0.25 * u[1]),
        "pose": s["pose"], "stride": 0.01 if u[2] < 0.4 else 0.06 + 0.06 * u[3],
        "p_occ": s["occlusion"] * (0.4 + 0.6 * u[4]), "occ_kind": int(u[5] * 3), "occ_size": 0.25 + 0.3 * u[6],
        "occ_colour": 0.15 + 0.7 * rng.random(3),
        "res": 1 - s["resolution"] * (0.3 + 0.45 * u[7]),
        "light_angle": 2 * np.pi * u[8], "light_amp": s["illumination"] * (0.25 + 0.45 * u[9]),
        "exposure": 1 + s["illumination"] * (-0.45 + 0.6 * u[10]),
    }


def with_effects(cam, effects):
    """Camera ``cam`` (``synthetic.sample_camera``) with its ``effects`` attached and its back-view
    probability mixed towards the effect's (viewpoint)."""
    v = effects["view"]
    return dict(cam, effects=effects, p_back=(1 - v) * cam["p_back"] + v * effects["p_back"])


def draw_image(rng):
    """The per-image numbers of the effects (always the same count of draws): a dict of floats."""
    u = rng.random(6)
    return {"stride_sign": 1.0 if u[0] < 0.5 else -1.0, "stride_jit": 0.8 + 0.4 * u[1], "occ": u[2],
            "occ_pos": u[3], "occ_jit": u[4] - 0.5, "light_jit": 0.9 + 0.2 * u[5]}


def geometry(g, eff, draw):
    """Foreshortening (viewpoint) and stride (pose) applied to the person geometry ``g`` in place."""
    if eff["squash"] != 1:
        g["y0"] += g["h"] * (1 - eff["squash"])
        g["h"] *= eff["squash"]
        g["bw"] /= eff["squash"]
    if eff["pose"] > 0:
        walk = eff["stride"] * draw["stride_jit"] * draw["stride_sign"] * g["h"]
        g["stride"] = (1 - eff["pose"]) * g["stride"] + eff["pose"] * walk


def occlude(canvas, eff, draw, yy, xx, box):
    """Paint the camera's occluder onto ``canvas`` (H, W, 3) for a share ``p_occ`` of its images;
    ``box(yy, xx, centre, half_h, half_w, r)`` is the drawing module's box mask."""
    if draw["occ"] >= eff["p_occ"]:
        return
    H, W = canvas.shape[:2]
    size = eff["occ_size"] * (1 + 0.3 * draw["occ_jit"])
    if eff["occ_kind"] == 0:  # low wall / car: from the bottom edge up
        mask = box(yy, xx, (H * (1 - size / 2), W / 2), H * size / 2, W, 0.0)
    elif eff["occ_kind"] == 1:  # pole in front of the person
        mask = box(yy, xx, (H / 2, W * (0.3 + 0.4 * draw["occ_pos"])), H, W * size * 0.2, 0.0)
    else:  # object at one side, mid height
        side = W * (0.1 if draw["occ_pos"] < 0.5 else 0.9)
        mask = box(yy, xx, (H * 0.55, side), H * size * 0.6, W * size * 0.6, 2.0)
    canvas += mask[..., None] * (np.asarray(eff["occ_colour"], np.float32) - canvas)


def light(canvas, eff, draw, yy, xx):
    """Directional light gradient and exposure (illumination) on ``canvas`` (H, W, 3), in place."""
    if eff["light_amp"] == 0 and eff["exposure"] == 1:
        return
    H, W = canvas.shape[:2]
    ramp = np.cos(eff["light_angle"]) * (xx / W - 0.5) + np.sin(eff["light_angle"]) * (yy / H - 0.5)
    gain = eff["exposure"] * (1 + eff["light_amp"] * draw["light_jit"] * 2 * ramp)
    canvas *= gain[..., None].astype(np.float32)


def lower_resolution(img, eff):
    """Down-sample a uint8 (H, W, 3) image by the camera's factor and back up (resolution)."""
    if eff["res"] >= 1:
        return img
    H, W = img.shape[:2]
    small = Image.fromarray(img).resize((max(4, round(W * eff["res"])), max(8, round(H * eff["res"]))),
                                        Image.BILINEAR)
    return np.asarray(small.resize((W, H), Image.BILINEAR))


__all__ = ["EFFECTS", "effect_strengths", "sample_effects", "with_effects", "draw_image", "geometry", "occlude",
           "light", "lower_resolution"]
