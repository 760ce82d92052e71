"""Tracklet datasets: the synthetic MARS-layout writer, the MARS parser reading it unchanged, the
DukeMTMC video parsers, and clear errors for broken layouts."""
import os
import re
import shutil

import numpy as np
import pytest
from fastreid.data.datasets import DATASET_REGISTRY
from PIL import Image
from scipy.io import loadmat, savemat

from canu_plugin.data.datasets import check_dataset_layout
from canu_plugin.data.video import is_video_dataset, uses_video
from canu_plugin.data.video.mars import MARS, FRAME_NAME
from canu_plugin.data.video.synthetic_video import generate_video_domain
from canu_plugin.errors import CanuError

TINY = dict(num_train_ids=5, num_test_ids=4, tracklets_per_camera=(1, 2), frames_per_tracklet=(2, 4),
            num_distractors=2, num_junk=2, image_size=(32, 16))


@pytest.fixture
def damaged(video_root, tmp_path):
    """A private copy of the tiny tracklet domains, safe to damage; returns (root, SynthVidA folder)."""
    shutil.copytree(video_root, tmp_path / "root")
    return str(tmp_path / "root"), str(tmp_path / "root" / "SynthVidA")


def _meta(root, name):
    import json
    with open(os.path.join(root, name, "meta.json")) as f:
        return json.load(f)["stats"]


@pytest.mark.parametrize("name", ["SynthVidA", "SynthVidB"])
def test_mars_parser_reads_synthetic_tracklets(video_root, name):
    data = DATASET_REGISTRY.get(name)(root=video_root)
    assert isinstance(data, MARS) and is_video_dataset(name)
    stats = _meta(video_root, name)
    assert (len(data.train), len(data.query), len(data.gallery)) == (
        stats["tracklets"]["train"], stats["tracklets"]["query"], stats["tracklets"]["gallery"])
    for paths, pid, cam in data.query + data.gallery:
        names = [FRAME_NAME.fullmatch(os.path.basename(p)) for p in paths]
        assert {(int(m.group(1)), int(m.group(2)) - 1) for m in names} == {(pid, cam)}  # one person, one camera
        assert [int(m.group(4)) for m in names] == list(range(1, len(paths) + 1))  # temporal order
        assert all(os.path.isfile(p) for p in paths)
    assert all(pid != -1 for _, pid, _ in data.query + data.gallery)  # junk dropped
    assert sum(pid == 0 for _, pid, _ in data.gallery) == stats["distractors"] and all(p > 0 for _, p, _ in data.query)
    prefix = data.dataset_name + "_"
    assert all(isinstance(p, str) and p.startswith(prefix) and c.startswith(prefix) for _, p, c in data.train)
    # every query has a gallery tracklet of its id in another camera
    gal = {(p, c) for _, p, c in data.gallery}
    assert all(any(gp == p and gc != c for gp, gc in gal) for _, p, c in data.query)


def test_synthetic_info_files_have_mars_fields_and_shapes(video_root):
    info = os.path.join(video_root, "SynthVidA", "info")
    names = open(os.path.join(info, "test_name.txt")).read().split()
    tracks = loadmat(os.path.join(info, "tracks_test_info.mat"))["track_test_info"]
    query = loadmat(os.path.join(info, "query_IDX.mat"))["query_IDX"]
    assert tracks.ndim == 2 and tracks.shape[1] == 4 and query.shape == (1, _meta(video_root, "SynthVidA")
                                                                          ["tracklets"]["query"])
    assert tracks[0, 0] == 1 and tracks[-1, 1] == len(names)  # 1-based, inclusive, covering the list
    assert np.all(tracks[1:, 0] == tracks[:-1, 1] + 1) and set(np.unique(tracks[:, 2])) >= {-1, 0}
    assert query.min() >= 1 and query.max() <= len(tracks)
    assert all(FRAME_NAME.fullmatch(n) for n in names)
    junk = tracks[tracks[:, 2] == -1][0].astype(int)
    assert names[junk[0] - 1].startswith("00-1C") and os.path.isfile(
        os.path.join(video_root, "SynthVidA", "bbox_test", "00-1", names[junk[0] - 1]))


def test_generation_is_deterministic_and_skips_an_identical_domain(tmp_path):
    a = generate_video_domain(tmp_path / "a", "SynthVidB", seed=3, **TINY)
    b = generate_video_domain(tmp_path / "b", "SynthVidB", seed=3, **TINY)
    files = sorted(os.path.relpath(os.path.join(d, f), a["path"]) for d, _, fs in os.walk(a["path"]) for f in fs)
    assert files and files == sorted(os.path.relpath(os.path.join(d, f), b["path"])
                                     for d, _, fs in os.walk(b["path"]) for f in fs)
    for f in files:
        with open(os.path.join(a["path"], f), "rb") as x, open(os.path.join(b["path"], f), "rb") as y:
            assert x.read() == y.read(), f
    assert generate_video_domain(tmp_path / "a", "SynthVidB", seed=3, **TINY)["skipped"]
    with pytest.raises(CanuError, match="different arguments"):
        generate_video_domain(tmp_path / "a", "SynthVidB", seed=4, **TINY)


def test_frames_of_a_tracklet_move_but_keep_the_person(video_root):
    data = DATASET_REGISTRY.get("SynthVidA")(root=video_root)
    paths = max((it[0] for it in data.train), key=len)
    frames = [np.asarray(Image.open(p), dtype=float) for p in paths]
    assert all(f.shape == (32, 16, 3) for f in frames)
    step = np.mean([np.abs(a - b).mean() for a, b in zip(frames, frames[1:])])
    other = np.asarray(Image.open(data.train[-1][0][0]), dtype=float)
    assert 0 < step < np.abs(frames[0] - other).mean()  # consecutive frames differ, less than another tracklet


@pytest.mark.parametrize("damage, match", [
    (lambda d: shutil.rmtree(os.path.join(d, "bbox_test")), r"missing folder .*SynthVidA.bbox_test"),
    (lambda d: os.remove(os.path.join(d, "info", "query_IDX.mat")), r"missing file .*info.query_IDX\.mat"),
    (lambda d: shutil.rmtree(os.path.join(d, "bbox_train", sorted(os.listdir(os.path.join(d, "bbox_train")))[0])),
     r"missing frame .*bbox_train"),
])
def test_broken_layouts_stop_with_the_expected_path(damaged, damage, match):
    root, folder = damaged
    damage(folder)
    with pytest.raises(CanuError, match=match) as err:
        check_dataset_layout("SynthVidA", root)
        DATASET_REGISTRY.get("SynthVidA")(root=root)
    assert "make_synthetic.py" in str(err.value)


def test_a_tracklet_mixing_two_people_or_a_bad_row_is_refused(damaged):
    root, folder = damaged
    info = os.path.join(folder, "info")
    tracks = loadmat(os.path.join(info, "tracks_train_info.mat"))["track_train_info"]
    other = tracks[tracks[:, 2] != tracks[0, 2]][0]
    bad = tracks.copy()
    bad[0, 1] = other[0]  # row 1 runs into the next person's frames
    savemat(os.path.join(info, "tracks_train_info.mat"), {"track_train_info": bad})
    with pytest.raises(CanuError, match="row 1: frame .* is not of the row's identity"):
        DATASET_REGISTRY.get("SynthVidA")(root=root)
    bad[0, 1] = 10 ** 6
    savemat(os.path.join(info, "tracks_train_info.mat"), {"track_train_info": bad})
    with pytest.raises(CanuError, match="outside the .* names of train_name.txt"):
        DATASET_REGISTRY.get("SynthVidA")(root=root)
    savemat(os.path.join(info, "tracks_train_info.mat"), {"other": bad})
    with pytest.raises(CanuError, match="has no variable 'track_train_info'"):
        DATASET_REGISTRY.get("SynthVidA")(root=root)


def test_real_mars_folder_and_error(damaged, tmp_path):
    root, folder = damaged
    with pytest.raises(CanuError, match=r"missing folder .*mars: put MARS at .*bbox_train,bbox_test,info"):
        check_dataset_layout("MARS", str(tmp_path / "nothing"))
    os.rename(folder, os.path.join(root, "MARS"))  # the release's folder, as torchreid names it or upper-case
    data = DATASET_REGISTRY.get("MARS")(root=root)
    assert len(data.train) == _meta(root, "MARS")["tracklets"]["train"]
    assert data.train[0][1].startswith("mars_")


def _duke_frame(pid, cam, f, naming):
    """A frame name of DukeMTMC-VideoReID (``new`` / ``old`` release) or DukeMTMC-SI-Tracklet (``si``:
    camera and frame number in the camera's video only, the identity is the folder's)."""
    return {"new": f"{pid:04d}_C{cam}_F{f + 2:04d}_X{f:05d}.jpg", "old": f"{pid:04d}C{cam}F{f + 2:04d}X{f:05d}.jpg",
            "si": f"c{cam}_{30821 + f:06d}.jpg"}[naming]


def _duke_tree(video_root, base, naming="new"):
    """DukeMTMC-VideoReID- or SI-Tracklet-style folders built from SynthVidB's tracklets (frames
    renumbered from F0002 / 030821)."""
    data = DATASET_REGISTRY.get("SynthVidB")(root=video_root)
    splits = {"train": data.train, "query": data.query, "gallery": [g for g in data.gallery if g[1] > 0]}
    for split, items in splits.items():
        for t, (paths, pid, cam) in enumerate(items):
            pid = int(str(pid).split("_")[-1]) if isinstance(pid, str) else pid
            cam = int(str(cam).split("_")[-1]) if isinstance(cam, str) else cam
            tdir = os.path.join(base, split, f"{pid:04d}", f"{t:04d}")
            os.makedirs(tdir)
            for f, p in enumerate(paths):
                shutil.copy(p, os.path.join(tdir, _duke_frame(pid, cam + 1, f, naming)))
    return splits


@pytest.mark.parametrize("name, sub, naming", [("DukeMTMCVideoReID", "dukemtmc-vidreid/DukeMTMC-VideoReID", "new"),
                                               ("DukeMTMCVideoReID", "dukemtmc-vidreid/DukeMTMC-VideoReID", "old"),
                                               ("DukeMTMCSITracklet", "DukeMTMC-SI-Tracklet", "si")])
def test_duke_video_parsers(video_root, tmp_path, name, sub, naming):
    with pytest.raises(CanuError, match=f"missing folder .*{os.path.basename(sub)}"):
        check_dataset_layout(name, str(tmp_path))
    splits = _duke_tree(video_root, str(tmp_path / sub), naming)
    data = DATASET_REGISTRY.get(name)(root=str(tmp_path))
    assert (len(data.train), len(data.query), len(data.gallery)) == tuple(len(v) for v in splits.values())
    ref = sorted((len(p), c) for p, _, c in splits["query"])
    assert sorted((len(p), c) for p, _, c in data.query) == ref  # every frame kept, camera from the name
    assert sorted(q[1] for q in data.query) == sorted(q[1] for q in splits["query"])  # identity from the folder
    paths = data.query[0][0]
    expected = [_duke_frame(data.query[0][1], data.query[0][2] + 1, f, naming) for f in range(len(paths))]
    assert [os.path.basename(p) for p in paths] == expected  # every frame, in temporal order
    shutil.rmtree(str(tmp_path / sub / "gallery"))
    with pytest.raises(CanuError, match="missing folder .*gallery"):
        DATASET_REGISTRY.get(name)(root=str(tmp_path))


@pytest.mark.parametrize("frame, problem", [("0001_C1_F0001_X00001.jpg", r"names must be c<cam>_<frame>\.jpg"),
                                            ("c9_030821.jpg", "camera 9 outside 1..8")])
def test_si_tracklet_frame_names_are_the_releases(tmp_path, frame, problem):
    """DukeMTMC-SI-Tracklet names frames c<cam>_<frame>.jpg (the authors' duke_si_tkl.py); the
    VideoReID naming is not one of its releases' and is refused with the expected form."""
    for split in ("train", "query", "gallery"):
        tdir = tmp_path / "DukeMTMC-SI-Tracklet" / split / "0001" / "tkl0001"
        tdir.mkdir(parents=True)
        (tdir / "c1_030821.jpg").write_bytes(b"")
    bad = tmp_path / "DukeMTMC-SI-Tracklet" / "train" / "0001" / "tkl0002" / frame
    bad.parent.mkdir()
    bad.write_bytes(b"")
    with pytest.raises(CanuError, match=re.escape(str(bad)) + ".*" + problem):
        DATASET_REGISTRY.get("DukeMTMCSITracklet")(root=str(tmp_path))


def test_mixing_video_and_image_training_sets_is_refused():
    assert uses_video(["SynthVidA"]) and not uses_video(["SynthA"]) and not uses_video(["NoSuchSet"])
    with pytest.raises(CanuError, match="mixes video"):
        uses_video(["SynthA", "SynthVidA"])


def test_make_synthetic_tool_writes_tracklet_domains(tmp_path, capsys):
    from canu_plugin.cli import synth as tool
    args = ["--root", str(tmp_path), "--domains", "SynthVidB", "--num-train-ids", "3", "--num-test-ids", "2",
            "--frames-per-tracklet", "2", "3", "--image-size", "32", "16", "--num-distractors", "1", "--num-junk", "1"]
    assert tool.main(args) == 0
    assert "SynthVidB: 3 train ids / 2 test ids, 5 cameras" in capsys.readouterr().out
    assert len(DATASET_REGISTRY.get("SynthVidB")(root=str(tmp_path)).train) > 0
    with pytest.raises(CanuError, match="--images-per-camera applies to image domains only"):
        tool.generate(args + ["--images-per-camera", "1", "2"])
    with pytest.raises(SystemExit) as stop:  # the command: one line on stderr, exit status 2
        tool.main(args + ["--images-per-camera", "1", "2"])
    assert stop.value.code == 2 and "error: --images-per-camera applies" in capsys.readouterr().err
