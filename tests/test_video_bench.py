"""The benchmark's synthetic-video setting: its rows, default methods and data preparation."""
import importlib.util
import os

from canu_plugin.bench.methods import SETTINGS, plan

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _benchmark_tool():
    spec = importlib.util.spec_from_file_location("benchmark", os.path.join(REPO, "tools", "benchmark.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_synthetic_video_setting_runs_the_four_acan_rows_on_tracklets():
    setting = SETTINGS["synthetic-video"]
    tool = _benchmark_tool()
    args = tool.parse_args(["--setting", "synthetic-video"])
    assert args.methods == ["acan_triplet", "acan_grl", "acan_oce", "acan_ace"] and args.seeds == [0, 1]
    assert [(m, s) for m, s, _ in plan("synthetic-video", args.methods, [0])] == [(m, 0) for m in args.methods]
    assert len(tool.parse_args([]).methods) > 4  # the image setting keeps its rows
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
    tool = _benchmark_tool()
    tool.prepare_data("synthetic-video", str(tmp_path))
    tool.prepare_data("synthetic-video", str(tmp_path))
    assert calls == [str(tmp_path)] and (tmp_path / "SynthVidB" / "info" / "query_IDX.mat").is_file()
