"""The generator's knobs for camera-split but recoverable identities (canu_plugin.data.synthetic_knobs,
synthetic_detail): off gives the bytes of the code before them; on does what it says; seeded."""
import collections
import glob
import hashlib
import importlib.util
import json
import os
import zlib

import numpy as np
import pytest
from PIL import Image

from canu_plugin.data.synthetic import DOMAIN_PRESETS, generate_domain, sample_camera, sample_identity
from canu_plugin.data.synthetic_detail import (LOGO_PLACES, PRINT_COLOURS, add_detail, detail_strengths,
                                               sample_detail, vocabulary)
from canu_plugin.data.synthetic_draw import render
from canu_plugin.data.synthetic_knobs import KNOBS, body_angle, camera_groups, with_knobs
from canu_plugin.errors import CanuError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(num_train_ids=4, num_test_ids=3, images_per_camera=(2, 3), num_distractors=2, image_size=(32, 16))
EFFECTS = {"viewpoint": 0.5, "pose": 0.5, "occlusion": 0.3, "resolution": 0.5, "illumination": 0.5}
# digests of tiny domains made by the code before the knobs existed (commit de5a6be)
BEFORE = {"SynthA": ("SynthA", {}, "c89cd16c3813814a"),
          "SynthB": ("SynthB", {"seed": 1}, "9a48f48e255ef803"),
          "SynthPre0": ("SynthPre0", {"style": "SynthPre", "camera_shift": 1.0, "camera_effects": EFFECTS},
                        "ff0610530d65a979")}
OFF = dict(identity_detail=None, shared_detail_vocabulary=False, visits=0.0, camera_gaps=None, camera_low_level=None)
OFF_SPELLED = dict(identity_detail={"pattern": 0, "logo": 0.0}, shared_detail_vocabulary=True, visits=False,
                   camera_gaps={"strength": 0, "groups": 2}, camera_low_level={"noise": 0})
ON = {"identity_detail": 0.8, "visits": 0.7, "camera_gaps": {"strength": 0.8, "low_res_camera": True},
      "camera_low_level": 0.8, "shared_detail_vocabulary": True}
MEDIUM = dict(num_train_ids=6, num_test_ids=2, images_per_camera=(3, 4), num_distractors=0, image_size=(64, 32))


def digest(folder):
    """SHA-256 (16 hex digits) of every file's relative path and bytes under ``folder``."""
    h = hashlib.sha256()
    for dirpath, dirnames, names in sorted(os.walk(folder)):
        dirnames.sort()
        for name in sorted(names):
            path = os.path.join(dirpath, name)
            h.update(os.path.relpath(path, folder).encode())
            with open(path, "rb") as f:
                h.update(f.read())
    return h.hexdigest()[:16]


def make(root, name="SynthA", **kw):
    """Generate a tiny domain (TINY, then ``kw``); its folder."""
    return generate_domain(root, name, **{**TINY, **kw})["path"]


def images(folder):
    """{(pid, camera): [float (H, W, 3) arrays]} of every person image of a domain."""
    out = collections.defaultdict(list)
    for path in sorted(glob.glob(os.path.join(folder, "*", "*.jpg"))):
        name = os.path.basename(path)
        if int(name[:4]) > 0:
            out[int(name[:4]), int(name[6])].append(np.asarray(Image.open(path), float))
    return out


def per_camera(folder, stat):
    """{camera: mean of ``stat(image)`` over the camera's person images}."""
    by_cam = collections.defaultdict(list)
    for (_, cam), imgs in images(folder).items():
        by_cam[cam] += [stat(i) for i in imgs]
    return {c: float(np.mean(v)) for c, v in sorted(by_cam.items())}


# ---------------------------------------------------------------- off: today's bytes
@pytest.mark.parametrize("case", sorted(BEFORE))
def test_off_gives_the_bytes_of_the_code_before_the_knobs(tmp_path, case):
    name, kw, expected = BEFORE[case]
    assert digest(make(tmp_path / "none", name, **kw)) == expected
    assert digest(make(tmp_path / "defaults", name, **kw, **OFF)) == expected
    folder = make(tmp_path / "spelled", name, **kw, **OFF_SPELLED)  # off values written otherwise
    assert digest(folder) == expected
    with open(os.path.join(folder, "meta.json")) as f:
        assert not set(KNOBS) & set(json.load(f)["args"])


# ---------------------------------------------------------------- on: recorded, seeded
@pytest.mark.parametrize("knob", sorted(ON))
def test_each_knob_changes_the_images_is_recorded_and_seeded(tmp_path, knob):
    base = {"identity_detail": 0.8} if knob == "shared_detail_vocabulary" else {}  # nothing to share without detail
    kw = dict(base, **{knob: ON[knob]})
    off = digest(make(tmp_path / "off", seed=3, **base))
    a, b = make(tmp_path / "a", seed=3, **kw), make(tmp_path / "b", seed=3, **kw)
    assert digest(a) == digest(b) != off
    assert digest(make(tmp_path / "c", seed=4, **kw)) != digest(a)
    with open(os.path.join(a, "meta.json")) as f:
        args = json.load(f)["args"]
    assert knob in args and set(KNOBS) & set(args) == set(kw)


def test_bad_values_are_refused(tmp_path):
    for kw in ({"visits": 1.5}, {"identity_detail": {"logos": 1}}, {"identity_detail": {"lookalike_families": 3}},
               {"camera_gaps": {"strength": 0.5, "groups": 9}}, {"camera_low_level": {"blur": 1}},
               {"identity_detail": "lots"}, {"shared_detail_vocabulary": "yes"}):
        with pytest.raises(CanuError):
            make(tmp_path, **kw)


# ---------------------------------------------------------------- identity detail
def _person(detail=None, upper=(0.2, 0.3, 0.8)):
    ident = sample_identity(np.random.default_rng(0), DOMAIN_PRESETS["SynthA"])
    ident.update(pattern=0, bag=0, upper=np.array(upper), short_sleeves=True)
    if detail is not None:
        ident["detail"] = detail
    return ident


def _detail(**parts):
    none = {"pattern": None, "logo": None, "hat": None, "scarf": None, "side_bag": None, "shoes": None}
    return dict(none, **parts)


def test_detail_is_drawn_on_the_person_only_and_the_logo_follows_the_body():
    style = DOMAIN_PRESETS["SynthA"]
    cam = dict(sample_camera(np.random.default_rng(0), style, 0.0), p_mirror=0.0)
    logo = {"shape": "square", "place": "chest_left", "colour": PRINT_COLOURS[3], "size": 0.06}
    draw = lambda ident, back: render(ident, dict(cam, p_back=float(back)), style, np.random.default_rng(1),
                                      (128, 64)).astype(float)
    for back in (False, True):
        plain, marked = draw(_person(_detail()), back), draw(_person(_detail(logo=logo)), back)
        assert np.array_equal(plain, draw(_person(), back))  # an empty detail draws nothing
        diff = np.abs(marked - plain).sum(2)
        ys, xs = np.nonzero(diff > 30)
        assert 0.2 * 128 < ys.mean() < 0.45 * 128  # on the chest
        assert (xs.mean() < 32) != back  # the person's left: left of centre from the front, right from the back
        assert diff[:, :8].max() == 0 and diff[:, -8:].max() == 0  # nothing off the person


def test_pattern_second_colour_is_well_apart_in_hue_and_detail_ignores_the_style():
    import colorsys
    strengths = detail_strengths(1.0, "x")
    vocab = vocabulary("any", shared=True)
    for seed in range(20):
        upper = np.random.default_rng(seed).random(3)
        a = sample_detail(np.random.default_rng(seed), strengths, vocab, DOMAIN_PRESETS["SynthA"], upper)
        b = sample_detail(np.random.default_rng(seed), strengths, vocab, DOMAIN_PRESETS["SynthB"], upper)
        assert (a["pattern"]["kind"], a["logo"]["shape"], a["logo"]["place"]) == \
               (b["pattern"]["kind"], b["logo"]["shape"], b["logo"]["place"])  # only the palette differs
        h1, h2 = colorsys.rgb_to_hsv(*upper)[0], colorsys.rgb_to_hsv(*a["pattern"]["colour"])[0]
        assert min(abs(h1 - h2), 1 - abs(h1 - h2)) > 0.3 or colorsys.rgb_to_hsv(*upper)[1] < 0.05


def test_shared_vocabulary_is_one_for_every_style_and_style_vocabularies_differ():
    shared = [vocabulary(s, True) for s in ("SynthA", "SynthB", "SynthPre")]
    own = [vocabulary(s, False) for s in ("SynthA", "SynthB", "SynthPre")]
    assert all(np.array_equal(shared[0][k], v[k]) for v in shared for k in v)
    assert not np.allclose(own[0]["pattern"], own[1]["pattern"]) and not np.allclose(own[1]["place"], own[2]["place"])
    assert set(shared[0]) == {"pattern", "shape", "place", "print", "shoes"}
    assert len(shared[0]["place"]) == len(LOGO_PLACES)


def test_lookalike_families_share_global_colours_and_differ_in_detail():
    style = DOMAIN_PRESETS["SynthA"]
    rng = np.random.default_rng(0)
    idents = {pid: sample_identity(rng, style) for pid in range(1, 13)}
    args = {"seed": 0, "name": "SynthA", "style": "SynthA", "preset": style,
            "identity_detail": detail_strengths({"pattern": 1, "logo": 1, "lookalike_families": 3}, "x")}
    add_detail(idents, args, train_ids=range(1, 10), test_ids=range(10, 13))
    families = collections.defaultdict(list)
    for pid, ident in idents.items():
        families[tuple(np.round(ident["upper"], 6))].append(pid)
    assert sorted(len(f) for f in families.values()) == [3, 3, 3, 3]  # 9 train ids in 3, 3 test ids in 1
    assert sorted(families.values(), key=min)[-1] == [10, 11, 12]  # within a split
    for members in families.values():
        for key in ("lower", "hair", "skin", "second", "bag_colour"):
            assert all(np.array_equal(idents[m][key], idents[members[0]][key]) for m in members)
        details = {(idents[m]["detail"]["pattern"]["kind"], idents[m]["detail"]["logo"]["place"],
                    idents[m]["detail"]["logo"]["shape"]) for m in members}
        assert len(details) > 1


def test_families_are_recorded_in_meta_json(tmp_path):
    kw = {"identity_detail": {"pattern": 1, "logo": 1, "lookalike_families": 2}, "camera_shift": 0.0}
    with open(os.path.join(make(tmp_path, **kw), "meta.json")) as f:
        assert json.load(f)["args"]["identity_detail"] == {"pattern": 1.0, "logo": 1.0, "accessories": 0.0,
                                                          "lookalike_families": 2}


# ---------------------------------------------------------------- visits
def test_visits_make_tight_within_camera_sub_clusters(tmp_path):
    def within(folder):  # mean per-pixel variance over the images of each (id, camera)
        return np.mean([np.var(np.stack(v), axis=0).mean() for v in images(folder).values() if len(v) > 1])
    off, on = make(tmp_path / "off", **MEDIUM), make(tmp_path / "on", **MEDIUM, visits=1.0)
    half = make(tmp_path / "half", **MEDIUM, visits=0.5)
    assert within(on) < 0.25 * within(off) and within(on) < within(half) < within(off)


# ---------------------------------------------------------------- camera gaps
def test_camera_gaps_make_near_twins_beside_distant_cameras(tmp_path):
    style = DOMAIN_PRESETS["SynthA"]
    rng = np.random.default_rng(5)
    cams = [sample_camera(rng, style, 0.8) for _ in range(6)]
    args = {"seed": 0, "name": "SynthA", "camera_gaps": {"strength": 1.0, "groups": 3, "low_res_camera": True}}
    out = with_knobs(cams, args)
    groups = camera_groups(np.random.default_rng([0, zlib.crc32(b"SynthA"), 12]), 6, 3)
    vec = lambda c: np.concatenate([np.atleast_1d(c[k]) for k in ("gains", "bright", "contrast", "blur", "noise",
                                                                   "wall", "floor", "scale", "horizon", "p_back")])
    group_of = {c: g for g, part in enumerate(groups) for c in part}
    pairs = [(i, j) for i in range(6) for j in range(i + 1, 6)]
    d = {p: np.linalg.norm(vec(out[p[0]]) - vec(out[p[1]])) for p in pairs}
    twins = [d[p] for p in pairs if group_of[p[0]] == group_of[p[1]]]
    apart = [d[p] for p in pairs if group_of[p[0]] != group_of[p[1]]]
    assert len(twins) == 3 and np.mean(twins) < 0.2 * np.mean(apart)
    assert sum("low_level" in c and c["low_level"]["res"] == 0.35 for c in out) == 1
    # in the images: twins' mean colours are closer than other cameras'
    folder = make(tmp_path, **dict(MEDIUM, images_per_camera=(2, 3)), id_camera_correlation=0.0,
                  camera_gaps={"strength": 1.0, "groups": 3})
    groups = camera_groups(np.random.default_rng([0, zlib.crc32(b"SynthA"), 12]), 6, 3)
    mean = {c: per_camera(folder, lambda i, k=k: i[..., k].mean()) for k, c in enumerate("rgb")}
    colour = {cam: np.array([mean[c][cam] for c in "rgb"]) for cam in mean["r"]}
    group_of = {c + 1: g for g, part in enumerate(groups) for c in part}
    dist = lambda a, b: np.linalg.norm(colour[a] - colour[b])
    twins = [dist(a, b) for a in colour for b in colour if a < b and group_of[a] == group_of[b]]
    apart = [dist(a, b) for a in colour for b in colour if a < b and group_of[a] != group_of[b]]
    assert np.mean(twins) < 0.5 * np.mean(apart)


# ---------------------------------------------------------------- low-level camera
def test_low_level_white_balance_noise_jpeg_and_resolution_per_camera(tmp_path):
    off = make(tmp_path / "off", **MEDIUM)
    red_blue = lambda i: i[..., 0].mean() - i[..., 2].mean()
    grain = lambda i: np.abs(np.diff(i, axis=1)).mean()
    base_rb, base_grain = per_camera(off, red_blue), per_camera(off, grain)
    wb = per_camera(make(tmp_path / "wb", **MEDIUM, camera_low_level={"white_balance": 1}), red_blue)
    shift = np.array([wb[c] - base_rb[c] for c in wb])
    assert shift.std() > 5 and np.ptp(shift) > 15  # each camera its own white balance
    noisy = per_camera(make(tmp_path / "noise", **MEDIUM, camera_low_level={"noise": 1}), grain)
    extra = np.array([noisy[c] - base_grain[c] for c in noisy])
    assert extra.min() > 0 and extra.max() > 1.5 * extra.min()  # each camera its own noise level
    low = per_camera(make(tmp_path / "res", **MEDIUM, camera_low_level={"resolution": 1}), grain)
    assert all(low[c] < base_grain[c] for c in low)
    folder = make(tmp_path / "jpeg", **MEDIUM, camera_low_level={"jpeg": 1})
    tables = collections.defaultdict(set)
    for path in glob.glob(os.path.join(folder, "*", "*.jpg")):
        tables[os.path.basename(path)[6]].add(sum(Image.open(path).quantization[0]))
    assert all(len(t) == 1 for t in tables.values()) and len({t.pop() for t in tables.values()}) >= 4


def test_body_angle_sets_the_view_per_camera():
    low = {"angle": np.pi, "spread": 0.3, "turn": 1.0}
    for angle, back in ((np.pi, True), (0.0, False)):
        for seed in range(10):
            g = {"back": not back, "bw": 1.0}
            body_angle(g, dict(low, angle=angle), np.random.default_rng(seed))
            assert g["back"] is back and g["bw"] > 0.75
    g = {"back": False, "bw": 1.0}
    body_angle(g, dict(low, angle=np.pi / 2, spread=0.0), np.random.default_rng(0))
    assert g["bw"] == pytest.approx(0.6)  # a side view is narrower


# ---------------------------------------------------------------- testbed, pre-training, tool
def test_testbed_knobs_off_change_no_fingerprint_and_on_pass_through():
    from canu_plugin.bench.testbed import data_key, domain_kwargs, knobs, load_testbed
    plain = load_testbed({"seed": 0, "pretrain": {}})
    spelled = load_testbed({"seed": 0, "domains": dict(OFF_SPELLED, shared_detail_vocabulary=False),
                            "target": {"visits": 0}, "pretrain": dict(OFF_SPELLED, shared_detail_vocabulary=False)})
    assert data_key(spelled) == data_key(plain) and knobs(spelled) == knobs(plain)
    assert domain_kwargs(spelled, "target") == domain_kwargs(plain, "target")
    on = load_testbed({"seed": 0, "domains": {"visits": 0.5, "identity_detail": 0.6}, "target": {"visits": 0},
                       "source": {"shared_detail_vocabulary": True}})
    assert domain_kwargs(on, "source") == {"visits": 0.5, "identity_detail": 0.6, "shared_detail_vocabulary": True,
                                           "seed": 0}
    assert domain_kwargs(on, "target") == {"visits": 0, "identity_detail": 0.6, "seed": 0}  # the target's off wins


def test_pretrain_passes_the_knobs(tmp_path):
    from canu_plugin.bench.pretrain import generate_pretrain_data
    from canu_plugin.bench.testbed import PRETRAIN_DEFAULTS
    spec = dict(PRETRAIN_DEFAULTS, domains=1, num_train_ids=3, num_test_ids=2, images_per_camera=[1, 2],
                image_size=[32, 16])
    assert not set(KNOBS) & set(generate_pretrain_data(spec, tmp_path / "off")[0])
    args = generate_pretrain_data(dict(spec, identity_detail=0.5, shared_detail_vocabulary=True), tmp_path / "on")[0]
    assert args["identity_detail"]["logo"] == 0.5 and args["shared_detail_vocabulary"] is True


def test_contact_sheet_tool(tmp_path):
    spec = importlib.util.spec_from_file_location("contact_sheet", os.path.join(REPO, "tools", "contact_sheet.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = tmp_path / "sheet.png"
    assert tool.main(["--dataset", "SynthB", "--set", "num_train_ids=4", "num_test_ids=2", "image_size=[32,16]",
                      "identity_detail=0.5", "--out", str(out)]) == 0
    sheet = Image.open(out)
    assert sheet.size[0] > 5 * 16 and sheet.size[1] > 2 * 32
    make(tmp_path / "root", "SynthA")
    tool.main(["--root", str(tmp_path / "root"), "--dataset", "SynthA", "--pid", "1", "2", "--out", str(out)])
    with pytest.raises(SystemExit):
        tool.main(["--root", str(tmp_path / "root"), "--dataset", "SynthA", "--pid", "99", "--out", str(out)])
