"""canu_plugin.data.synthetic and tools/make_synthetic.py: layout, determinism, split rules,
camera-dependent identities, measurable camera shift and domain gap, meta.json, bad input."""
import collections
import glob
import importlib.util
import json
import os
import re

import numpy as np
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression

from canu_plugin.data.synthetic import DOMAIN_PRESETS, SPLITS, generate_all, generate_domain
from canu_plugin.errors import CanuError, user_errors

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = re.compile(r"^(\d{4})_c([1-9])s1_(\d{6})_00\.jpg$")
TINY = dict(num_train_ids=8, num_test_ids=8, images_per_camera=(2, 3), num_distractors=3, image_size=(32, 16))


def files(domain_dir):
    """{split: sorted [(pid, cam 1-based, frame, file name)]} read back from the file names."""
    out = {}
    for split in SPLITS:
        names = sorted(os.listdir(os.path.join(domain_dir, split)))
        out[split] = [(int(m[1]), int(m[2]), int(m[3]), n) for n, m in ((n, NAME.match(n)) for n in names)]
    return out


def cameras_per_id(rows):
    """{pid: set of cameras} for (pid, cam, ...) rows."""
    seen = collections.defaultdict(set)
    for pid, cam, *_ in rows:
        seen[pid].add(cam)
    return seen


def pixels(folder, size=(8, 16)):
    """Downsampled images of a folder as rows of floats (N, 16*8*3) and their cameras (N,)."""
    paths = sorted(glob.glob(os.path.join(folder, "*.jpg")))
    X = np.stack([np.asarray(Image.open(p).resize(size, Image.BILINEAR), np.float32).ravel() / 255 for p in paths])
    return X, np.array([int(os.path.basename(p)[6]) for p in paths])


def held_out_accuracy(X, y, seed=0):
    """Accuracy of a logistic regression on a random 30% held-out part of (X, y)."""
    order = np.random.default_rng(seed).permutation(len(y))
    cut = int(0.7 * len(y))
    clf = LogisticRegression(max_iter=1000).fit(X[order[:cut]], y[order[:cut]])
    return clf.score(X[order[cut:]], y[order[cut:]])


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = generate_domain(tmp_path / "r1", "SynthA", seed=3, **TINY)
    generate_domain(tmp_path / "r2", "SynthA", seed=3, **TINY)
    generate_domain(tmp_path / "r3", "SynthA", seed=4, **TINY)
    rel = lambda r: sorted(os.path.relpath(p, r) for p in glob.glob(os.path.join(r, "SynthA", "*", "*")))
    same = rel(tmp_path / "r1")
    assert same == rel(tmp_path / "r2") and len(same) == sum(a["images"].values())
    for p in same + [os.path.join("SynthA", "meta.json")]:
        assert (tmp_path / "r1" / p).read_bytes() == (tmp_path / "r2" / p).read_bytes(), p
    common = set(same) & set(rel(tmp_path / "r3"))  # same names can occur; their pixels must differ
    assert sum((tmp_path / "r1" / p).read_bytes() == (tmp_path / "r3" / p).read_bytes() for p in common) == 0


def test_layout_names_and_split_rules(tmp_path):
    stats = generate_domain(tmp_path, "SynthB", num_cameras=4, **TINY)
    dom = tmp_path / "SynthB"
    rows = files(dom)
    assert all(NAME.match(n) for split in rows.values() for *_, n in split)
    assert {split: len(r) for split, r in rows.items()} == stats["images"]
    frames = [f for split in rows.values() for _, _, f, _ in split]
    assert len(frames) == len(set(frames))  # every file name is unique
    assert Image.open(dom / "query" / rows["query"][0][3]).size == (16, 32)  # (W, H)
    train_ids = {p for p, *_ in rows["bounding_box_train"]}
    test_ids = {p for p, *_ in rows["query"]}
    assert len(train_ids) == 8 and len(test_ids) == 8 and not train_ids & test_ids and 0 not in train_ids
    assert {p for p, *_ in rows["bounding_box_test"]} == test_ids | {0}
    assert sum(p == 0 for p, *_ in rows["bounding_box_test"]) == 3
    assert all(1 <= c <= 4 for split in rows.values() for _, c, *_ in split)
    query_pairs = [(p, c) for p, c, *_ in rows["query"]]
    assert len(query_pairs) == len(set(query_pairs))  # at most one query per (id, camera)
    gallery = cameras_per_id(r for r in rows["bounding_box_test"] if r[0] > 0)
    for pid, cam in query_pairs:
        assert gallery[pid] - {cam}, f"query {pid} c{cam} has no gallery image in another camera"
    assert cameras_per_id(rows["query"]) == gallery  # each visited camera has a query and a gallery image


@pytest.mark.parametrize("corr, lengths", [(0.0, {5}), (0.6, {2, 3, 4}), (1.0, {2})])
def test_id_camera_correlation_controls_cameras_per_id(tmp_path, corr, lengths):
    generate_domain(tmp_path, "SynthB", id_camera_correlation=corr, num_train_ids=30, num_test_ids=10,
                    images_per_camera=(1, 1), num_distractors=0, image_size=(16, 8))
    per_id = cameras_per_id(files(tmp_path / "SynthB")["bounding_box_train"])
    seen = {len(c) for c in per_id.values()}
    assert seen <= lengths and (len(seen) > 1 or seen == lengths)
    for cams in per_id.values():  # a contiguous (cyclic) walk through the 5 cameras
        assert any({(s + k) % 5 + 1 for k in range(len(cams))} == cams for s in range(5))
    if corr > 0:  # cameras see different id populations
        by_cam = [{p for p, c in per_id.items() if cam in c} for cam in range(1, 6)]
        assert len({frozenset(s) for s in by_cam}) == 5


def test_meta_json_idempotence_and_overwrite(tmp_path):
    first = generate_domain(tmp_path, "SynthA", **TINY)
    meta = json.loads((tmp_path / "SynthA" / "meta.json").read_text())
    assert meta["args"]["num_train_ids"] == 8 and meta["args"]["num_cameras"] == DOMAIN_PRESETS["SynthA"]["num_cameras"]
    assert meta["stats"]["images"] == first["images"] and not first["skipped"]
    some = sorted(glob.glob(str(tmp_path / "SynthA" / "query" / "*.jpg")))[0]
    mtime = os.stat(some).st_mtime_ns
    again = generate_domain(tmp_path, "SynthA", **TINY)
    assert again["skipped"] and again["images"] == first["images"] and os.stat(some).st_mtime_ns == mtime
    with pytest.raises(CanuError, match=r"different arguments \(camera_shift\).*overwrite"):
        generate_domain(tmp_path, "SynthA", **dict(TINY, camera_shift=0.3))
    redone = generate_domain(tmp_path, "SynthA", overwrite=True, **dict(TINY, camera_shift=0.3))
    assert not redone["skipped"]
    assert json.loads((tmp_path / "SynthA" / "meta.json").read_text())["args"]["camera_shift"] == 0.3
    os.remove(sorted(glob.glob(str(tmp_path / "SynthA" / "query" / "*.jpg")))[0])
    with pytest.raises(CanuError, match="meta.json lists"):
        generate_domain(tmp_path, "SynthA", **dict(TINY, camera_shift=0.3))
    (tmp_path / "other" / "SynthA").mkdir(parents=True)
    (tmp_path / "other" / "SynthA" / "notes.txt").write_text("mine")
    with pytest.raises(CanuError, match=re.escape(str(tmp_path / "other" / "SynthA")) + ".*no readable meta.json"):
        generate_domain(tmp_path / "other", "SynthA", **TINY)
    assert (tmp_path / "other" / "SynthA" / "notes.txt").exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temporary folders left


@pytest.mark.parametrize("bad, words", [
    (dict(num_cameras=7), "num_cameras=7"), (dict(camera_shift=1.5), "camera_shift"),
    (dict(id_camera_correlation=-0.1), "id_camera_correlation"), (dict(images_per_camera=(3, 2)), "images_per_camera"),
    (dict(num_train_ids=1000, num_test_ids=600), "1501"), (dict(image_size=(8, 4)), "image_size"),
    (dict(style="SynthZ"), "unknown synthetic domain style"), (dict(image_size=128), "image_size must be two integers"),
])
def test_bad_arguments_raise_clear_errors(tmp_path, bad, words):
    with pytest.raises(CanuError, match=re.escape(words)):
        generate_domain(tmp_path, "SynthA", **dict(TINY, **bad))
    assert not (tmp_path / "SynthA").exists()


def test_root_that_is_a_file(tmp_path):
    (tmp_path / "datasets").write_text("")
    with pytest.raises(CanuError, match=re.escape(str(tmp_path / "datasets")) + " is a file"):
        generate_domain(tmp_path / "datasets", "SynthA", **TINY)


def test_camera_shift_is_learnable_and_domains_differ(tmp_path):
    kw = dict(num_train_ids=16, num_test_ids=2, images_per_camera=(2, 3), num_distractors=0, image_size=(32, 16))
    shifted = generate_all(tmp_path / "s", **kw)
    X, cams = pixels(tmp_path / "s" / "SynthA" / "bounding_box_train")
    chance = 1 / shifted["SynthA"]["num_cameras"]
    acc = held_out_accuracy(X, cams)
    assert acc > 3 * chance, acc
    generate_domain(tmp_path / "n", "SynthA", camera_shift=0.0, id_camera_correlation=0.0, **kw)
    Xn, cams_n = pixels(tmp_path / "n" / "SynthA" / "bounding_box_train")
    assert held_out_accuracy(Xn, cams_n) < acc - 0.3  # the knob really controls the shift
    XB, _ = pixels(tmp_path / "s" / "SynthB" / "bounding_box_train")
    dom = held_out_accuracy(np.concatenate([X, XB]), np.r_[np.zeros(len(X)), np.ones(len(XB))])
    assert dom > 0.9, dom


def make_synthetic():
    """tools/make_synthetic.py as a module (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location("make_synthetic", os.path.join(REPO, "tools", "make_synthetic.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_command_line_tool(tmp_path, capsys):
    tool = make_synthetic()
    common = ["--root", str(tmp_path), "--num-train-ids", "4", "--num-test-ids", "3", "--images-per-camera", "1", "2",
              "--image-size", "32", "16", "--num-distractors", "1"]
    assert tool.main(common + ["--sheet", str(tmp_path / "sheet.png")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"SynthA: 4 train ids / 3 test ids, 6 cameras, train \d+ / query \d+ / gallery \d+", out)
    assert re.search(r"SynthB: 4 train ids / 3 test ids, 5 cameras", out)
    w, h = Image.open(tmp_path / "sheet.png").size
    cams = {c for _, c, *_ in files(tmp_path / "SynthA")["bounding_box_train"]}
    assert w == 4 + len(cams) * (16 + 4) and h == 4 + 4 * (32 + 4)  # a column per camera, a row per train id
    tool.main(common)
    assert capsys.readouterr().out.count("already there, skipped") == 2
    tool.main(common + ["--camera-shift", "0.2", "--domains", "SynthB", "--overwrite"])
    assert "skipped" not in capsys.readouterr().out


def test_command_line_error_is_one_line(tmp_path, capsys):
    (tmp_path / "SynthB").mkdir()
    (tmp_path / "SynthB" / "x.txt").write_text("not ours")
    with pytest.raises(SystemExit) as exit_info, user_errors():  # what the tool's __main__ block does
        make_synthetic().main(["--root", str(tmp_path), "--domains", "SynthB"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert str(tmp_path / "SynthB") in err and "--overwrite" in err
