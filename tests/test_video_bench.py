"""The benchmark's synthetic-video setting: its rows, default methods and data preparation."""
import os

from canu_plugin.bench.methods import SETTINGS, default_methods, plan
from canu_plugin.cli import bench as tool

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_synthetic_video_setting_runs_the_four_acan_rows_on_tracklets():
    setting = SETTINGS["synthetic-video"]
    methods = default_methods("synthetic-video")
    assert methods == ["acan_triplet", "acan_grl", "acan_oce", "acan_ace"]
    assert tool.parse_args(["--setting", "synthetic-video"]).setting == "synthetic-video"
    assert [(m, s) for m, s, _ in plan("synthetic-video", methods, [0])] == [(m, 0) for m in methods]
    assert len(default_methods("synthetic")) > 4  # the image setting keeps its rows
    for method in setting["methods"].values():
        assert os.path.isfile(os.path.join(REPO, method.config)) and method.family == "acan"
        assert "synthetic/video/" in method.config
    assert setting["target"] == "SynthVidB"


def test_prepare_data_generates_the_tracklet_domain_once(tmp_path, monkeypatch):
    from canu_plugin.data.video.synthetic_video import generate_video_all
    calls = []

    def tiny(root):
        calls.append(root)
        return generate_video_all(root, names=("SynthVidB",), num_train_ids=3, num_test_ids=2,
                                  frames_per_tracklet=(2, 2), image_size=(32, 16), num_distractors=1, num_junk=1)

    monkeypatch.setitem(SETTINGS["synthetic-video"], "generate", tiny)
    tool.prepare_data("synthetic-video", str(tmp_path))
    tool.prepare_data("synthetic-video", str(tmp_path))
    assert calls == [str(tmp_path)] and (tmp_path / "SynthVidB" / "info" / "query_IDX.mat").is_file()


def test_real_video_configs_keep_the_papers_settings(tmp_path, monkeypatch):
    import glob
    import fastreid.data.build as build
    import pytest
    from canu_plugin.data.intra_camera import build_acan_train_loader
    from canu_plugin.engine import set_datasets_root, setup_cfg
    from canu_plugin.errors import CanuError
    paths = sorted(glob.glob(os.path.join(REPO, "configs", "video", "*_*.yml")))
    assert len(paths) == 8
    for path in paths:
        cfg = setup_cfg(path, ["MODEL.DEVICE", "cpu"])
        assert cfg.MODEL.META_ARCHITECTURE == "ACAN" and cfg.MODEL.BACKBONE.DEPTH == "50x" and cfg.MODEL.BACKBONE.PRETRAIN
        assert tuple(cfg.INPUT.SIZE_TRAIN) == (256, 128) and cfg.MODEL.ACAN.LAMBDA == 1.0
        assert (cfg.MODEL.ACAN.PIDS_PER_GROUP, cfg.DATALOADER.NUM_INSTANCE, cfg.MODEL.ACAN.CAMERA_BATCH) == (32, 4, 64)
        assert (cfg.VIDEO.SEQ_LEN, cfg.VIDEO.SAMPLE, cfg.VIDEO.TEST_FRAMES) == (4, "random", 0)
        scheme = os.path.basename(path)[:-4].split("_")[-1]
        assert cfg.MODEL.ACAN.SCHEME == ("none" if scheme == "triplet" else scheme)
    monkeypatch.setattr(build, "_root", build._root)
    monkeypatch.setenv("FASTREID_DATASETS", str(tmp_path))
    set_datasets_root(str(tmp_path))  # no dataset here: a run stops at once with the folder it expected
    for leaf, folder in (("MARS_oce.yml", "mars"), ("DukeMTMCSITracklet_grl.yml", "DukeMTMC-SI-Tracklet")):
        with pytest.raises(CanuError, match=f"missing folder .*{folder}: put"):
            build_acan_train_loader(setup_cfg(os.path.join(REPO, "configs", "video", leaf), ["MODEL.DEVICE", "cpu"]),
                                    str(tmp_path))
