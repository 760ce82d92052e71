"""Drawing for :mod:`canu_plugin.data.synthetic`: one person image seen by one camera.

A person is a stack of anti-aliased shapes (capsules for limbs, ellipses for head and shoes, rounded
boxes for torso and bags) alpha-blended with numpy onto the camera's background, in the order a
viewer sees them (the back view swaps face for hair and shows a backpack instead of its straps);
the camera then applies its lighting, colour cast, contrast, blur and noise. All masks are (H, W)
float32 arrays in [0, 1]; canvases are (H, W, 3) float32 RGB in [0, 1] until the final uint8.
"""
import numpy as np
from scipy.ndimage import gaussian_filter

from canu_plugin.data import synthetic_effects as fx
from canu_plugin.data import synthetic_knobs as knobs


def _capsule(yy, xx, a, b, r):
    """Anti-aliased mask of the segment a-b ((y, x) points) thickened by radius r."""
    ay, ax = a
    dy, dx = b[0] - ay, b[1] - ax
    t = np.clip(((yy - ay) * dy + (xx - ax) * dx) / max(dy * dy + dx * dx, 1e-6), 0, 1)
    return np.clip(r - np.hypot(yy - ay - t * dy, xx - ax - t * dx) + 0.5, 0, 1)


def _ellipse(yy, xx, c, ry, rx):
    """Anti-aliased mask of an axis-aligned ellipse centred at c = (y, x)."""
    d = np.hypot((yy - c[0]) / ry, (xx - c[1]) / rx)
    return np.clip((1 - d) * min(ry, rx) + 0.5, 0, 1)


def _box(yy, xx, c, hh, hw, r=0.0):
    """Anti-aliased mask of a box centred at c = (y, x), half sizes hh, hw, corner radius r."""
    qy, qx = np.abs(yy - c[0]) - hh + r, np.abs(xx - c[1]) - hw + r
    d = np.hypot(np.maximum(qy, 0), np.maximum(qx, 0)) + np.minimum(np.maximum(qy, qx), 0) - r
    return np.clip(0.5 - d, 0, 1)


def _paint(canvas, mask, colour):
    """Alpha-blend ``colour`` (3,) onto ``canvas`` (H, W, 3) where ``mask`` (H, W) is set, in place."""
    canvas += mask[..., None] * (np.asarray(colour, np.float32) - canvas)


def _background(cam, H, W, rng, yy, xx):
    """Camera background, (H, W, 3) floats: wall above the horizon, floor below, plus a texture."""
    jitter = rng.uniform(-0.04, 0.04, 3)
    horizon = (cam["horizon"] + rng.uniform(-0.03, 0.03)) * H
    floor = np.clip((yy - horizon) / 2 + 0.5, 0, 1)[..., None]
    img = (1 - floor) * (cam["wall"] + jitter) + floor * (cam["floor"] + jitter)
    phase, period = rng.uniform(0, 2 * np.pi), cam["tex_period"] * W
    kind = cam["texture"]
    wave = (np.sin(2 * np.pi * xx / period + phase) if kind == 0 else
            np.sign(np.sin(2 * np.pi * (xx + yy) / period + phase)) if kind == 1 else (yy / H - 0.5) * 2)
    return (img + cam["tex_amp"] * wave[..., None]).astype(np.float32)


def _lower_body(c, ident, g, yy, xx):
    """Legs, shoes and shorts/skirt of a person with geometry ``g`` onto canvas ``c``."""
    h, cx, y0, bw, st = g["h"], g["cx"], g["y0"], g["bw"], g["stride"]
    legs = ident["lower"] if ident["lower_kind"] == 0 else ident["skin"]
    for side in (-1, 1):
        hip, foot = (y0 + 0.5 * h, cx + side * 0.055 * h * bw), (y0 + 0.93 * h, cx + side * (0.06 * h * bw + st))
        _paint(c, _capsule(yy, xx, hip, foot, 0.045 * h * bw), legs)
        if ident["lower_kind"] == 1:  # shorts down to the knee
            knee = ((hip[0] + foot[0]) / 2, (hip[1] + foot[1]) / 2)
            _paint(c, _capsule(yy, xx, hip, knee, 0.05 * h * bw), ident["lower"])
        shoe = (foot[0] + 0.02 * h, foot[1] + side * 0.01 * h)
        _paint(c, _ellipse(yy, xx, shoe, 0.025 * h, 0.05 * h), ident["shoes"])
    if ident["lower_kind"] == 2:  # skirt: trapezoid from the waist to above the knee
        t = np.clip((yy - y0 - 0.46 * h) / (0.24 * h), 0, 1)
        inside = (t > 0) & (t < 1) & (np.abs(xx - cx) < (0.12 + 0.06 * t) * h * bw)
        _paint(c, inside.astype(float), ident["lower"])


def _upper_body(c, ident, g, yy, xx):
    """Torso with its pattern, arms, hands and bag straps onto canvas ``c``."""
    h, cx, y0, bw, back = g["h"], g["cx"], g["y0"], g["bw"], g["back"]
    torso = _box(yy, xx, (y0 + 0.33 * h, cx), 0.17 * h, 0.125 * h * bw, 0.05 * h)
    _paint(c, torso, ident["upper"])
    rel = yy - y0
    pattern = [None, (rel // (0.05 * h)) % 2, rel > 0.36 * h,
               None if back else _box(yy, xx, (y0 + 0.28 * h, cx), 0.045 * h, 0.045 * h), xx > cx][ident["pattern"]]
    if pattern is not None:
        _paint(c, torso * pattern, ident["second"])
    if ident.get("detail"):  # identity detail (synthetic_detail): pattern and print on the top
        _detail().torso(c, torso, ident, g, yy, xx)
    sleeve = ident["upper"]
    for side in (-1, 1):
        shoulder = (y0 + 0.2 * h, cx + side * (0.125 * h * bw - 0.012 * h))
        hand = (y0 + 0.5 * h, cx + side * (0.15 * h * bw + 0.015 * h) - g["stride"] * 0.4)
        elbow = ((shoulder[0] + hand[0]) / 2, (shoulder[1] + hand[1]) / 2)
        _paint(c, _capsule(yy, xx, shoulder, hand, 0.032 * h), ident["skin"] if ident["short_sleeves"] else sleeve)
        _paint(c, _capsule(yy, xx, shoulder, elbow, 0.036 * h), sleeve)
        _paint(c, _ellipse(yy, xx, (hand[0] + 0.02 * h, hand[1]), 0.025 * h, 0.022 * h), ident["skin"])
        if ident["bag"] == 1 and not back:  # backpack straps seen from the front
            _paint(c, _capsule(yy, xx, shoulder, (y0 + 0.42 * h, cx + side * 0.07 * h), 0.013 * h), ident["bag_colour"])
    if ident["bag"] == 1 and back:
        _paint(c, _box(yy, xx, (y0 + 0.33 * h, cx), 0.12 * h, 0.09 * h, 0.02 * h), ident["bag_colour"])
    side = -1 if back else 1  # shoulder bag / handbag hang on the person's right
    if ident["bag"] == 2:
        _paint(c, _capsule(yy, xx, (y0 + 0.2 * h, cx - side * 0.09 * h), (y0 + 0.46 * h, cx + side * 0.16 * h),
                           0.011 * h), ident["bag_colour"])
        _paint(c, _box(yy, xx, (y0 + 0.51 * h, cx + side * 0.17 * h), 0.06 * h, 0.05 * h, 0.01 * h),
               ident["bag_colour"])
    elif ident["bag"] == 3:
        _paint(c, _box(yy, xx, (y0 + 0.6 * h, cx + side * 0.19 * h), 0.045 * h, 0.04 * h, 0.01 * h),
               ident["bag_colour"])


def _head(c, ident, g, yy, xx):
    """Head (face from the front, hair from the back) and hair onto canvas ``c``."""
    h, cx, y0, back = g["h"], g["cx"], g["y0"], g["back"]
    centre, ry, rx = (y0 + 0.075 * h, cx), 0.07 * h, 0.052 * h
    if ident["long_hair"] and back:
        _paint(c, _box(yy, xx, (y0 + 0.16 * h, cx), 0.09 * h, 0.06 * h, 0.03 * h), ident["hair"])
    _paint(c, _ellipse(yy, xx, centre, ry, rx), ident["hair"] if back else ident["skin"])
    cap = _ellipse(yy, xx, (centre[0] - 0.012 * h, cx), ry * 1.02, rx * 1.08) * (yy < centre[0] - 0.02 * h)
    _paint(c, cap, ident["hair"])


def _detail():
    """The identity-detail module (imported on first use: it draws with this module's shapes)."""
    from canu_plugin.data import synthetic_detail
    return synthetic_detail


def render(ident, cam, style, rng, size, partial=False, motion=None, effect_rng=None, knob_rng=None):
    """One image of person ``ident`` seen by camera ``cam``: uint8 array of shape (H, W, 3).

    ``ident`` comes from ``synthetic.sample_identity``, ``cam`` from ``synthetic.sample_camera``,
    ``style`` is a ``DOMAIN_PRESETS`` entry, ``size`` is (H, W); ``rng`` (a numpy Generator) draws
    this image's jitter (scale, position, aspect, stride, colours, view, mirror, lighting, noise).
    ``partial`` pushes the person half out of the frame (a bad detection, used for distractors).
    ``motion`` (tracklet frames, optional): ``{"dx": shift in image widths, "scale": size factor,
    "stride": leg swing as a fraction of the person height}`` applied on top of the jitter; the
    random draws are the same with or without it, so frames rendered from one seed differ only by it.
    ``cam["effects"]`` (optional, :mod:`.synthetic_effects`): viewpoint, pose, occlusion, resolution
    and illumination of the camera, with this image's own draws from ``effect_rng``.
    ``ident["detail"]`` (optional, :mod:`.synthetic_detail`): patterns, prints and accessories drawn on the
    body; ``cam["low_level"]`` (optional, :mod:`.synthetic_knobs`): body angle, white balance, noise and
    resolution of the camera, with this image's own draws from ``knob_rng``.
    """
    H, W = size
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32) + np.float32(0.5)
    canvas = _background(cam, H, W, rng, yy, xx)
    h = H * style["person_height"] * ident["height"] * cam["scale"] * rng.uniform(0.94, 1.04)
    dx = rng.uniform(0.3, 0.45) * W * rng.choice([-1, 1]) if partial else rng.uniform(-0.06, 0.06) * W
    g = {"h": h, "cx": W / 2 + dx, "y0": (H - h) / 2 + (cam["shift_y"] + rng.uniform(-0.03, 0.03)) * H,
         "bw": ident["build"] * rng.uniform(0.92, 1.08), "stride": rng.uniform(-0.06, 0.06) * h,
         "back": rng.random() < cam["p_back"]}
    if motion:
        _move(g, motion, W)
    eff = cam.get("effects")
    draw = fx.draw_image(effect_rng) if eff else None
    if eff:
        fx.geometry(g, eff, draw)
    low = cam.get("low_level")
    if low:
        knobs.body_angle(g, low, knob_rng)
    person, detail = _dress(ident, rng), ident.get("detail")
    if person["long_hair"] and not g["back"]:  # long hair behind the shoulders, seen from the front
        _paint(canvas, _box(yy, xx, (g["y0"] + 0.14 * h, g["cx"]), 0.08 * h, 0.07 * h, 0.03 * h), person["hair"])
    _lower_body(canvas, person, g, yy, xx)
    _upper_body(canvas, person, g, yy, xx)
    _head(canvas, person, g, yy, xx)
    if detail:
        _detail().after_body(canvas, person, g, yy, xx)
    if eff:
        fx.occlude(canvas, eff, draw, yy, xx, _box)
        fx.light(canvas, eff, draw, yy, xx)
    if rng.random() < cam["p_mirror"]:
        canvas = canvas[:, ::-1]
    img = _apply_camera(canvas, cam, style, rng, H)
    img = fx.lower_resolution(img, eff) if eff else img
    return knobs.apply_low_level(img, low, knob_rng) if low else img


def _dress(ident, rng):
    """This image's colours of person ``ident`` (each jittered by +-0.03), with its detail's shoes if any."""
    person = dict(ident)
    for k in ("upper", "second", "lower", "shoes", "hair", "bag_colour", "skin"):
        person[k] = np.clip(ident[k] + rng.uniform(-0.03, 0.03, 3), 0, 1)
    if ident.get("detail") and ident["detail"]["shoes"] is not None:
        person["shoes"] = ident["detail"]["shoes"]
    return person


def _move(g, motion, W):
    """Apply a tracklet frame's ``motion`` to the person geometry ``g`` in place (scaled about its centre)."""
    scale = float(motion.get("scale", 1.0))
    g["y0"] += g["h"] * (1 - scale) / 2
    g["h"] *= scale
    g["cx"] += float(motion.get("dx", 0.0)) * W
    if "stride" in motion:
        g["stride"] = float(motion["stride"]) * g["h"]


def _apply_camera(img, cam, style, rng, H):
    """Lighting, colour cast, contrast, blur and sensor noise of ``cam``: (H, W, 3) floats -> uint8."""
    img = img * np.asarray(style["light"]) * cam["gains"] * rng.uniform(0.93, 1.07)
    img = (img - 0.5) * cam["contrast"] + 0.5 + cam["bright"]
    sigma = cam["blur"] * H / 128.0
    if sigma > 0.05:
        img = gaussian_filter(img, sigma=(sigma, sigma, 0))
    img = img + rng.normal(0.0, cam["noise"] + 0.01, img.shape)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
