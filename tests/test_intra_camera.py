"""Intra-camera labelled view of a fast-reid dataset and ACAN's train loader."""
import logging
from collections import defaultdict

import pytest

import canu_plugin  # noqa: F401
from canu_plugin.data import intra_camera as IC
from canu_plugin.errors import CanuError

CONFIG = "configs/synthetic/acan_oce.yml"
TINY = ["INPUT.SIZE_TRAIN", "[32, 16]", "INPUT.SIZE_TEST", "[32, 16]", "DATALOADER.NUM_WORKERS", "0",
        "MODEL.ACAN.PIDS_PER_GROUP", "4", "SOLVER.IMS_PER_BATCH", "16", "MODEL.ACAN.CAMERA_BATCH", "12"]


def _cfg(*opts):
    from canu_plugin.engine import setup_cfg
    return setup_cfg(CONFIG, [*TINY, *opts])


def _cams_of_label(items):
    cams = defaultdict(set)
    for _, label, cam in items:
        cams[label].add(cam)
    return cams


def test_a_person_in_two_cameras_gets_two_unrelated_labels():
    items = [("a1", "d_7", "d_1"), ("a2", "d_7", "d_1"), ("a3", "d_7", "d_3"), ("b1", "d_8", "d_3"),
             ("c1", "d_9", "d_10"), ("c2", "d_7", "d_10")]
    new, info = IC.intra_camera_items(items)
    assert info["cameras"] == ["d_1", "d_3", "d_10"]                 # natural order: 1 < 3 < 10
    assert [it[2] for it in new] == [0, 0, 1, 1, 2, 2]
    labels = {(items[i][1], items[i][2]): new[i][1] for i in range(len(items))}
    assert len({labels[("d_7", c)] for c in ("d_1", "d_3", "d_10")}) == 3  # person 7: three labels
    assert all(len(c) == 1 for c in _cams_of_label(new).values())      # no label in two cameras
    assert info["num_labels"] == len(set(labels.values())) == 5
    assert [it[0] for it in new] == [it[0] for it in items]


def test_small_cameras_are_dropped_or_refused(caplog):
    items = [(f"x{p}_{c}", f"m_{p}", f"m_{c}") for c in range(3) for p in range(40 if c != 1 else 15)]
    with caplog.at_level(logging.WARNING):
        new, info = IC.intra_camera_items(items, min_ids_per_camera=32)
    assert info["dropped"] == {"m_1": 15} and info["cameras"] == ["m_0", "m_2"]
    assert {it[2] for it in new} == {0, 1} and len(new) == 80 and "dropped" in caplog.text
    with pytest.raises(CanuError, match="DROP_SMALL_CAMERAS True"):
        IC.intra_camera_items(items, min_ids_per_camera=32, drop_small=False)
    with pytest.raises(CanuError, match="only 0 camera"):
        IC.intra_camera_items(items, min_ids_per_camera=41)
    with pytest.raises(CanuError, match="empty"):
        IC.intra_camera_items([])


def test_synthetic_dataset_has_no_label_shared_across_cameras(use_synth_root):
    from fastreid.data.datasets import DATASET_REGISTRY
    from fastreid.data.transforms import build_transforms
    original = DATASET_REGISTRY.get("SynthA")(root=use_synth_root).train
    cfg = _cfg()
    dataset = IC.build_acan_dataset(cfg, use_synth_root, build_transforms(cfg, is_train=True))
    assert len(dataset) == len(original) and dataset.num_cameras == 6
    assert all(len(c) == 1 for c in _cams_of_label(dataset.img_items).values())
    pairs = {(pid, cam) for _, pid, cam in original}
    assert dataset.num_classes == len(pairs) > len({pid for pid, _ in pairs})  # ids seen by several cameras
    by_pid = defaultdict(set)
    for (_, pid, _), (_, label, _) in zip(original, dataset.img_items):
        by_pid[pid].add(label)
    assert max(len(v) for v in by_pid.values()) > 1
    sample = dataset[(3, IC.CAMERA_PART)]
    assert sample[IC.PART_KEY] == 1 and sample["targets"] == dataset.img_items[3][1]
    assert dataset[3][IC.PART_KEY] == 0 and tuple(sample["images"].shape) == (3, 32, 16)


def test_train_loader_batches(use_synth_root):
    loader = IC.build_acan_train_loader(_cfg(), use_synth_root)
    assert loader.dataset.num_cameras == 6
    batches = iter(loader)
    for _ in range(3):
        batch = next(batches)
        part, cams = batch[IC.PART_KEY].tolist(), batch["camids"].tolist()
        assert part == [0] * 16 + [1] * 12
        assert len(set(cams[:16])) == 1 and len(set(batch["targets"][:16].tolist())) == 4
        assert sorted(cams[16:]) == sorted(list(range(6)) * 2)
    if hasattr(loader, "shutdown"):
        loader.shutdown()


def test_batch_size_errors():
    with pytest.raises(CanuError, match="multiple of MODEL.ACAN.PIDS_PER_GROUP"):
        IC.acan_batch_sizes(_cfg("SOLVER.IMS_PER_BATCH", "20"), 6)
    with pytest.raises(CanuError, match="raise it to at least 6"):
        IC.acan_batch_sizes(_cfg("MODEL.ACAN.CAMERA_BATCH", "5"), 6)
    assert IC.acan_batch_sizes(_cfg("SOLVER.IMS_PER_BATCH", "32"), 5) == (4, 4, 2, 2)


def test_loader_refuses_groups_larger_than_every_camera(use_synth_root):
    with pytest.raises(CanuError, match="fewer than 30 identities"):
        IC.build_acan_train_loader(_cfg("MODEL.ACAN.PIDS_PER_GROUP", "30", "SOLVER.IMS_PER_BATCH", "120",
                                        "MODEL.ACAN.DROP_SMALL_CAMERAS", "False"), use_synth_root)


def _fake_msmt17(root, ids_per_camera):
    """MSMT17_V2's folders and list files (fast-reid's parser reads the lists, not the images);
    ``ids_per_camera``: {release camera number: identities}."""
    base = root / "MSMT17_V2"
    for d in ("mask_train_v2", "mask_test_v2"):
        (base / d).mkdir(parents=True)
    train = [f"{p:04d}/{p:04d}_{i:03d}_{cam:02d}_0303morning_0015_0.jpg {p}"
             for cam, n in ids_per_camera.items() for p in range(n) for i in range(2)]
    (base / "list_train.txt").write_text("\n".join(train) + "\n")
    (base / "list_val.txt").write_text("")
    for name in ("list_query.txt", "list_gallery.txt"):
        (base / name).write_text("0000/0000_000_01_0303morning_0015_0.jpg 0\n")


def test_dropped_camera_warning_names_the_camera_as_the_release_does(tmp_path, log_messages):
    _fake_msmt17(tmp_path, {1: 6, 2: 3, 5: 6, 12: 6})  # files *_02_* hold 3 identities: dropped at P = 4
    with log_messages(IC.__name__) as messages:
        dataset = IC.build_acan_dataset(_cfg("DATASETS.NAMES", '("MSMT17",)'), str(tmp_path))
    assert dataset.num_cameras == 3
    warning = next(m for m in messages if "dropped" in m)
    assert "msmt17 02 (3 identities)" in warning and "msmt17_1" not in warning
    kept = next(m for m in messages if "per-camera identities" in m)
    assert "msmt17 01, msmt17 05, msmt17 12" in kept


def test_camera_names_follow_each_release():
    from canu_plugin.data.cameras import camera_name
    assert camera_name("market1501_0") == "market1501 c1"    # 0002_c1s1_000451_03.jpg
    assert camera_name("dukemtmc_7") == "dukemtmc c8"        # 0005_c8_f0046985.jpg
    assert camera_name("msmt17_4") == "msmt17 05"     # *_05_*.jpg
    assert camera_name("mars_0") == "mars C1"                # 0001C1T0001F001.jpg
    assert camera_name(0, "mars") == "mars C1"               # query / gallery camids are 0-based ints
    assert camera_name("other_3") == "other_3" and camera_name(3) == "3"
