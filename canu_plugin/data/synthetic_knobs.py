"""The generator's knobs for camera-split but recoverable identities (:mod:`canu_plugin.data.synthetic`).

Five arguments of :func:`~canu_plugin.data.synthetic.generate_domain`, each off by default (off: the
same bytes and the same meta.json as without the argument; on: recorded in meta.json's ``args``):

- ``identity_detail`` and ``shared_detail_vocabulary``: :mod:`.synthetic_detail`;
- ``visits`` (strength in [0, 1], True = 1): the images of one identity in one camera are one short
  visit: every per-image draw of the drawing (pose phase, front/back and mirror, box offset and size,
  background and light jitter, and the camera effects' per-image draws) is the visit's, moved towards
  the image's own by ``1 - 0.85 * visits`` (sensor noise stays per image): tight within-camera
  sub-clusters, as Market-1501's detected frames of one track;
- ``camera_gaps`` (strength g in [0, 1], or {"strength": g, "groups": k, "low_res_camera": bool}):
  the cameras fall into k groups (default 3; a fixed random partition); every camera of a group is
  pulled towards the group's first camera (every set-up number to ``1 - 0.9 g`` of its distance, and
  at g >= 0.5 the group's background texture) while the groups stay independent draws: near-twin
  cameras beside distant ones. ``low_res_camera``: one camera also sees at 0.35 of the resolution;
- ``camera_low_level`` (strength in [0, 1], or {part: strength} of :data:`LOW_LEVEL`): the camera in
  low-level statistics and viewpoint: white balance (colour temperature and tint), sensor noise,
  JPEG quality (92 down to 22), resolution (down to 0.35) and a body-angle distribution (each camera
  sees people turned around its own angle: front, back or side, side views narrower).

New randomness comes only from streams of their own (``[seed, crc, k, ...]``, crc of the domain's name:
k 7-9 a visit's draws per (pid, camera), 10 an image's knob draws, 11 the low-level cameras, 12 the
camera groups; 13-14 identity detail), beside the generator's k 0-5, so the existing draws never move.
"""
import numpy as np
from PIL import Image

from canu_plugin.errors import CanuError

LOW_LEVEL = ("white_balance", "noise", "jpeg", "resolution", "body_angle")
GAP_KEYS = ("strength", "groups", "low_res_camera")
KNOBS = ("identity_detail", "shared_detail_vocabulary", "visits", "camera_gaps", "camera_low_level")


def _strength(value, what, name):
    """A float in [0, 1] from a number or a bool (None: 0); CanuError otherwise."""
    try:
        s = float(value or 0.0)
    except (TypeError, ValueError):
        s = -1.0
    if not 0 <= s <= 1:
        raise CanuError(f"bad arguments for synthetic domain {name!r}: {what} must be a number in [0, 1], "
                        f"got {value!r}")
    return s


def _parts(value, keys, what, name):
    """{key: strength} of a number (every key) or a dict of ``keys``; {} when every strength is 0."""
    if not isinstance(value, dict):
        value = dict.fromkeys(keys, _strength(value, what, name))
    unknown = sorted(set(value) - set(keys))
    if unknown:
        raise CanuError(f"bad arguments for synthetic domain {name!r}: unknown {what} key(s) {unknown}; "
                        f"the keys are {list(keys)}")
    out = {k: _strength(value.get(k), f"{what}.{k}", name) for k in keys}
    return out if any(out.values()) else {}


def _gaps(value, name, num_cameras):
    """Validated ``camera_gaps``: {} when off, else {"strength", "groups", "low_res_camera"}."""
    if not isinstance(value, dict):
        value = {"strength": value}
    unknown = sorted(set(value) - set(GAP_KEYS))
    if unknown:
        raise CanuError(f"bad arguments for synthetic domain {name!r}: unknown camera_gaps key(s) {unknown}; "
                        f"the keys are {list(GAP_KEYS)}")
    groups = value.get("groups", 3)
    if not (isinstance(groups, (int, np.integer)) and 1 <= groups <= num_cameras):
        raise CanuError(f"bad arguments for synthetic domain {name!r}: camera_gaps.groups must be an integer "
                        f"in 1..{num_cameras} (the number of cameras), got {groups!r}")
    out = {"strength": _strength(value.get("strength"), "camera_gaps.strength", name), "groups": int(groups),
           "low_res_camera": bool(value.get("low_res_camera", False))}
    return out if out["strength"] or out["low_res_camera"] else {}


def knob_args(kw, name, num_cameras):
    """Pop the knobs of :data:`KNOBS` from ``kw``; return {knob: validated value} of those that are on
    (what meta.json records: nothing for a knob left off, so old generations keep their args)."""
    from canu_plugin.data.synthetic_detail import detail_strengths
    out = {"identity_detail": detail_strengths(kw.pop("identity_detail", None), name),
           "visits": _strength(kw.pop("visits", None), "visits", name),
           "camera_gaps": _gaps(kw.pop("camera_gaps", None) or {}, name, num_cameras),
           "camera_low_level": _parts(kw.pop("camera_low_level", None), LOW_LEVEL, "camera_low_level", name)}
    shared = kw.pop("shared_detail_vocabulary", False)
    if not isinstance(shared, (bool, np.bool_)) and shared not in (0, 1, None):
        raise CanuError(f"bad arguments for synthetic domain {name!r}: shared_detail_vocabulary must be true or "
                        f"false, got {shared!r}")
    out["shared_detail_vocabulary"] = bool(shared) and bool(out["identity_detail"])  # no detail: nothing to share
    return {k: out[k] for k in KNOBS if out[k]}


# ---------------------------------------------------------------- visits
class VisitRng:
    """A numpy Generator stand-in for one image of a visit: every ``uniform`` / ``random`` draw is the
    visit's draw moved towards the image's own by ``jitter`` (0: the visit's, 1: the image's); other
    draws (``normal``: sensor noise) are the image's. The image's generator is consumed exactly as
    without visits; the visit's generator is a fresh one per image, seeded by (pid, camera)."""

    def __init__(self, image, visit, jitter):
        self._image, self._visit, self._w = image, visit, float(jitter)

    def _mix(self, method, *args):
        own, shared = getattr(self._image, method)(*args), getattr(self._visit, method)(*args)
        return shared + self._w * (np.asarray(own) - shared)

    def uniform(self, low=0.0, high=1.0, size=None):
        """Uniform draw(s), the visit's moved towards the image's."""
        return self._mix("uniform", low, high, size)

    def random(self, size=None):
        """Uniform [0, 1) draw(s), the visit's moved towards the image's."""
        return self._mix("random", size)

    def __getattr__(self, method):  # normal, choice, integers ...: the image's own
        return getattr(self._image, method)


def image_streams(args, pid, cam, frame):
    """The random streams of one image: (drawing, camera effects, knobs) generators; visits wrap the
    first two (and the third) in :class:`VisitRng` for a person's image (pid > 0)."""
    import zlib
    seed, crc = args["seed"], zlib.crc32(args["name"].encode())
    streams = [np.random.default_rng([seed, crc, k, frame]) for k in (3, 5, 10)]
    visits = args.get("visits", 0.0)
    if not visits or pid <= 0:
        return streams
    return [VisitRng(s, np.random.default_rng([seed, crc, k, pid, cam]), 1 - 0.85 * visits)
            for s, k in zip(streams, (7, 8, 9))]


# ---------------------------------------------------------------- low-level camera
def sample_low_level(rng, strengths):
    """One camera's low-level set-up (white balance gains, noise std, JPEG quality, resolution factor,
    body-angle mean and spread) at ``strengths`` ({part: s} of :data:`LOW_LEVEL`; 7 draws, always)."""
    u = rng.random(7)
    s = {k: strengths.get(k, 0.0) for k in LOW_LEVEL}
    temp, tint = s["white_balance"] * (-0.22 + 0.44 * u[0]), s["white_balance"] * (-0.08 + 0.16 * u[1])
    return {"gains": np.array([1 + temp, 1 + tint, 1 - temp]), "noise": s["noise"] * (0.015 + 0.055 * u[2]),
            "jpeg": 92 - s["jpeg"] * (10 + 60 * u[3]), "res": 1 - s["resolution"] * (0.2 + 0.45 * u[4]),
            "angle": np.pi * (2 * u[5] - 1), "spread": 0.3 + 0.4 * u[6], "turn": s["body_angle"]}


def neutral_low_level():
    """A low-level set-up that changes nothing (for a camera that only gets ``low_res_camera``)."""
    return {"gains": np.ones(3), "noise": 0.0, "jpeg": 92.0, "res": 1.0, "angle": 0.0, "spread": 0.0, "turn": 0.0}


def body_angle(g, low, rng):
    """The camera's body angle on the person geometry ``g`` (in place): with probability ``turn`` the
    view (front / back) follows an angle drawn around the camera's, and side views are narrower."""
    u = rng.random(2)
    if not low["turn"]:
        return
    theta = low["angle"] + low["spread"] * np.sqrt(3) * (2 * u[0] - 1)
    if u[1] < low["turn"]:
        g["back"] = bool(np.cos(theta) < 0)
    g["bw"] *= 1 - low["turn"] * 0.4 * abs(np.sin(theta))


def apply_low_level(img, low, rng):
    """White balance, sensor noise and resolution of the camera on a uint8 (H, W, 3) image (JPEG
    quality is applied when the file is written: ``jpeg_quality``)."""
    noise = rng.normal(0.0, 1.0, img.shape)
    if np.any(low["gains"] != 1) or low["noise"] > 0:
        x = img.astype(np.float32) / 255 * low["gains"].astype(np.float32) + low["noise"] * noise
        img = (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)
    if low["res"] < 1:
        H, W = img.shape[:2]
        small = Image.fromarray(img).resize((max(4, round(W * low["res"])), max(8, round(H * low["res"]))),
                                            Image.BILINEAR)
        img = np.asarray(small.resize((W, H), Image.BILINEAR))
    return img


def jpeg_quality(cam):
    """The JPEG quality the camera's images are saved with (92 without a low-level set-up)."""
    return int(round(cam["low_level"]["jpeg"])) if "low_level" in cam else 92


# ---------------------------------------------------------------- camera gaps
def _pull(member, anchor, t, discrete):
    """``member`` moved to ``t`` of its distance from ``anchor`` (numbers and arrays; nested dicts
    recursively; the key "angle" on the circle); other values: the anchor's when ``discrete``."""
    out = {}
    for k, v in member.items():
        a = anchor[k]
        if isinstance(v, dict):
            out[k] = _pull(v, a, t, discrete)
        elif k == "angle":
            out[k] = a + t * ((v - a + np.pi) % (2 * np.pi) - np.pi)
        elif isinstance(v, (float, np.floating, np.ndarray)) and not isinstance(v, (bool, np.bool_)):
            out[k] = a + t * (np.asarray(v) - a) if isinstance(v, np.ndarray) else float(a + t * (v - a))
        else:
            out[k] = a if discrete else v
    return out


def camera_groups(rng, num_cameras, groups):
    """A fixed random partition of the cameras into ``groups`` groups: list of int arrays (0-based)."""
    return [np.sort(part) for part in np.array_split(rng.permutation(num_cameras), groups)]


def with_knobs(cams, args):
    """The cameras (``synthetic.sample_camera`` dicts, effects attached) with their low-level set-up
    and camera gaps; ``cams`` unchanged when both are off."""
    import zlib
    seed, crc = args["seed"], zlib.crc32(args["name"].encode())
    if args.get("camera_low_level"):
        rng = np.random.default_rng([seed, crc, 11])
        cams = [dict(c, low_level=sample_low_level(rng, args["camera_low_level"])) for c in cams]
    gaps = args.get("camera_gaps")
    if not gaps:
        return cams
    rng = np.random.default_rng([seed, crc, 12])
    parts, low_res = camera_groups(rng, len(cams), gaps["groups"]), int(rng.integers(len(cams)))
    cams = list(cams)
    for part in parts:
        for c in part[1:]:
            cams[c] = _pull(cams[c], cams[part[0]], 1 - 0.9 * gaps["strength"], gaps["strength"] >= 0.5)
    if gaps["low_res_camera"]:
        low = cams[low_res].get("low_level", neutral_low_level())
        cams[low_res] = dict(cams[low_res], low_level=dict(low, res=min(low["res"], 0.35)))
    return cams


__all__ = ["KNOBS", "LOW_LEVEL", "knob_args", "VisitRng", "image_streams", "sample_low_level", "neutral_low_level",
           "body_angle", "apply_low_level", "jpeg_quality", "camera_groups", "with_knobs"]
