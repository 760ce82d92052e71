"""tools/benchmark.py: run plan, table cells, plots, and a tiny real sweep that resumes."""
import json
import os
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from scipy import stats

from canu_plugin.bench.methods import SECOND_SOURCE_SEED, SETTINGS, plan
from canu_plugin.bench.plots import curves, montage, nmi_points, sweep_plot
from canu_plugin.bench.report import differences, metric_table, write_report
from canu_plugin.bench.runner import Bench
from canu_plugin.errors import CanuError
from conftest import bench_record

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_plan_puts_source_runs_first_and_is_seed_major():
    runs = plan("synthetic", ["canu", "mmt", "acan_oce"], [0, 1])
    names = [(m, s) for m, s, _ in runs]
    assert names[:5] == [("source", 0), ("canu", 0), ("source_b", SECOND_SOURCE_SEED), ("mmt", 0), ("acan_oce", 0)]
    assert names[5] == ("source", 1) and len(names) == 10
    deps = dict(((m, s), d) for m, s, d in runs)
    assert deps[("mmt", 1)] == {"source": ("source", 1), "source_b": ("source_b", 1 + SECOND_SOURCE_SEED)}
    assert deps[("acan_oce", 0)] == {}
    for setting in SETTINGS.values():  # every config the benchmark names exists
        for m in setting["methods"].values():
            assert os.path.isfile(os.path.join(REPO, m.config)), m.config


def test_plan_rejects_unknown_names():
    with pytest.raises(CanuError, match="unknown method"):
        plan("synthetic", ["nope"], [0])
    with pytest.raises(CanuError, match="unknown setting"):
        plan("X2Y", ["canu"], [0])



def test_tables_use_the_sample_std_and_paired_intervals():
    recs = {("pseudo", s): bench_record("pseudo", s, v) for s, v in enumerate([10.0, 20.0, 30.0])}
    recs.update({("canu", s): bench_record("canu", s, v) for s, v in enumerate([12.0, 21.0, 33.0])})
    table = metric_table(recs, ["pseudo", "canu"], ("mAP",))
    assert "| pseudo | 0,1,2 | 20.0 ± 10.0 |" in table  # ddof 1: sd of 10, 20, 30 is 10
    diff = differences(recs, ["pseudo", "canu"], ("mAP",))[("canu", "pseudo")]["mAP"]
    d = np.array([2.0, 1.0, 3.0])
    half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / np.sqrt(3)
    assert diff["n"] == 3 and diff["mean"] == pytest.approx(2.0)
    assert (diff["lo"], diff["hi"]) == pytest.approx((2.0 - half, 2.0 + half))


def test_report_leaves_out_what_no_run_measured():
    from canu_plugin.bench.report import render
    meta = {"command": "x", "commit": "c", "device": "cpu", "torch": "t", "fastreid": "f", "faiss": "a"}
    acan = {("acan_triplet", s): bench_record("acan_triplet", s, 10.0 + s, family="acan") for s in range(3)}
    acan.update({("acan_oce", s): bench_record("acan_oce", s, 12.0 + s, family="acan") for s in range(3)})
    text, _ = render(acan, ["acan_triplet", "acan_oce"], meta)
    assert "Pseudo-label quality" not in text and "clustering s/epoch" not in text and "NMI" not in text
    assert "| acan_oce - acan_triplet | 3 | +2.0 [+2.0, +2.0] |" in text  # only the measured difference column
    assert "NMI" not in metric_table(acan, ["acan_oce"], ("mAP", "nmi_cam"))  # the sweep tables too
    pseudo = [{"epoch": 0, "nmi_cam": 0.2, "num_clusters": 7, "extract_s": 1.0, "cluster_s": 2.0}]
    clus = {("pseudo", s): bench_record("pseudo", s, 20.0, pseudo=pseudo) for s in range(2)}
    text, _ = render(clus, ["pseudo"], meta)
    assert "## Pseudo-label quality" in text and "| pseudo | 0,1 | 0.200 ± 0.000 | 7 ± 0 |" in text
    assert "| clustering s/epoch |" in text and "purity" not in text


def test_report_records_provenance_without_paths(tmp_path):
    for s in range(2):
        (tmp_path / f"m_s{s}.json").write_text(json.dumps(bench_record("m", s, 1.0 + s)))
    text = write_report(str(tmp_path), ["m"], plots=[str(tmp_path / "plots" / "x.png")],
                        command="canu-bench --seeds 0 1")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["meta"]["command"] == "canu-bench --seeds 0 1" and summary["meta"]["torch"]
    assert summary["meta"]["commit"] and summary["methods"]["m"]["mAP"]["n"] == 2
    assert summary["meta"]["fastreid"] == "1.4.0"  # the installed wheel's version, not the module's "1.3"
    assert str(tmp_path) not in text and str(tmp_path) not in json.dumps(summary)
    assert "![x.png](plots/x.png)" in text  # a relative link that works where the report is
    write_report(str(tmp_path), ["m"])  # --report-only keeps the command
    assert json.loads((tmp_path / "summary.json").read_text())["meta"]["command"] == "canu-bench --seeds 0 1"


def test_plots_draw_bands_and_sweeps(tmp_path):
    from PIL import Image
    recs = {("a", s): {"label": "A", "family": "clustering", "target": "T", "final": {"mAP": 1.0},
                       "pseudo": [{"epoch": e, "nmi_cam": 1.0 - 0.1 * e - s} for e in range(3)]} for s in (0, 1)}
    pixels = []
    for name, refs in (("c", {}), ("d", {"true identities": 0.3})):
        path = curves(recs, ["a"], ["clustering"], nmi_points, "NMI", "t", str(tmp_path / f"{name}.png"), refs)
        with Image.open(path) as img:
            assert img.size[0] <= 1000 and img.size[0] > 500
            pixels.append(np.asarray(img.convert("L"), dtype=np.int16))
    assert np.abs(pixels[0] - pixels[1]).sum() > 0  # the reference line is drawn
    assert curves(recs, ["a"], ["mmt"], lambda r: {}, "y", "t", str(tmp_path / "none.png")) is None
    by_value = {v: {("a", s): {**recs[("a", s)], "final": {"mAP": float(v) + s, "d_inter_pooled": 0.1}}
                    for s in (0, 1)} for v in ("0.1", "1.0")}
    assert sweep_plot(by_value, ["a"], "MODEL.CANU.MU", str(tmp_path / "s.png"))
    assert montage([("x", path), ("missing", str(tmp_path / "no.png"))], str(tmp_path / "m.png"), "t")
    assert montage([], str(tmp_path / "e.png"), "t") is None


TINY = ["INPUT.SIZE_TRAIN", "[32,16]", "INPUT.SIZE_TEST", "[32,16]", "SOLVER.IMS_PER_BATCH", "16",
        "SOLVER.MAX_EPOCH", "2", "PSEUDO.ITERS_PER_EPOCH", "2", "DATALOADER.NUM_WORKERS", "0",
        "MODEL.CANU.HIDDEN_DIM", "32", "CLUSTERING.K1", "10", "CLUSTERING.K2", "3"]


def test_tiny_sweep_runs_resumes_and_reports(synth_root, tmp_path):
    cmd = [sys.executable, os.path.join(REPO, "tools", "benchmark.py"), "--methods", "source", "canu", "--seeds", "0",
           "--root", synth_root, "--output", str(tmp_path), "--eval-period", "1", "--opts", *TINY]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    first = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    folder = tmp_path / "synthetic"
    rec = json.loads((folder / "canu_s0.json").read_text())
    assert [e["epoch"] for e in rec["epochs"] if "results" in e] == [1, 2]  # mAP curve points
    assert len(rec["pseudo"]) == 2 and "mi_cam" in rec["pseudo"][0] and "disc_acc" in rec["epochs"][-1]
    assert {"mAP", "Rank-1", "cam_probe", "d_inter"} <= set(rec["final"])
    opts = rec["identity"]["opts"]
    assert "MODEL.WEIGHTS" in opts and opts[opts.index("MODEL.WEIGHTS") + 1] == os.path.join(
        "<output>", "runs", "source_s0", "model_final.pth")
    kept = sorted(p.name for p in (folder / "runs" / "canu_s0").glob("*.pth"))
    assert kept == ["model_final.pth"]  # per-epoch checkpoints dropped once the run is finished
    final = torch.load(folder / "runs" / "canu_s0" / "model_final.pth", weights_only=True)
    assert "optimizer" not in final and "d_optimizer" not in final  # ... and the optimizers' states
    assert {"model", "discriminators", "pseudo_labels", "epoch"} <= set(final)
    table = (folder / "results.md").read_text()
    assert "pseudo-label baseline + CANU" in table and "direct transfer" in table and "canu - pseudo" not in table
    assert (folder / "plots" / "nmi_per_epoch.png").is_file() and (folder / "plots" / "map_per_epoch.png").is_file()
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0 and "0 run(s) done" in again.stdout  # finished runs are not redone
    other = subprocess.run(cmd + ["MODEL.CANU.MU", "0.3"], cwd=REPO, capture_output=True, text=True, env=env,
                           timeout=600)
    assert other.returncode == 2 and "run with other options" in other.stderr  # not reused under another label
    # a sweep of the weight: 0.1 is the config's value (the main run, reused), 0.5 a new run from the same source
    sweep = subprocess.run(cmd[:cmd.index("--methods")] + ["--methods", "canu", "--sweep", "MODEL.CANU.MU", "0.1", "0.5"]
                           + cmd[cmd.index("--seeds"):], cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
    assert sweep.returncode == 0, sweep.stderr[-2000:]
    swept = folder / "sweeps" / "MODEL.CANU.MU"
    new_rec = json.loads((swept / "0.5" / "canu_s0.json").read_text())
    assert [e["epoch"] for e in new_rec["epochs"] if "results" in e] == [2]  # a sweep's run: the final model only
    new = new_rec["identity"]["opts"]
    assert new[-2:] == ["MODEL.CANU.MU", "0.5"] and os.path.join("<output>", "runs", "source_s0", "model_final.pth") in new
    assert not (swept / "0.1").exists() or not list((swept / "0.1").glob("*.json"))  # the main run served
    assert "MODEL.CANU.MU = 0.1" in (swept / "results.md").read_text() and (swept / "sweep.png").is_file()
    # killed right after model_final.pth, before the run's records: the rerun takes the final model's numbers
    (folder / "canu_s0.json").unlink()
    (folder / "runs" / "canu_s0" / "final_results.json").unlink()
    resumed = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((folder / "canu_s0.json").read_text())["final"]["mAP"] == pytest.approx(rec["final"]["mAP"])
    # a record from before the evaluator measured mAP_cn: --re-evaluate adds it from the final model, trains nothing
    old = json.loads((folder / "canu_s0.json").read_text())
    assert {"mAP_cn", "Rank-1_cn"} <= set(old["final"])
    stripped = {**old, "final": {k: v for k, v in old["final"].items() if not k.endswith("_cn")}}
    (folder / "canu_s0.json").write_text(json.dumps(stripped))
    again = subprocess.run(cmd + ["--re-evaluate"], cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "2 run(s) re-evaluated" in again.stdout and "added Rank-1_cn, mAP_cn" in again.stdout
    assert "now," not in again.stdout  # the same mAP as recorded
    new = json.loads((folder / "canu_s0.json").read_text())
    assert new["final"] == pytest.approx(old["final"]) and new["epochs"] == old["epochs"]
    assert sorted(p.name for p in (folder / "runs" / "canu_s0").glob("*.pth")) == ["model_final.pth"]
    refused = subprocess.run(cmd + ["--re-evaluate", "--report-only"], cwd=REPO, capture_output=True, text=True,
                             env=env, timeout=600)
    assert refused.returncode == 2 and "drop --report-only" in refused.stderr


def test_rival_rows_are_their_base_rows_with_debiased_pseudo_labelling():
    from canu_plugin.bench.methods import CAMERA_NORM_OPTS, DEFAULT_METHODS, RIVALS
    for setting in ("synthetic", "M2D", "D2MSMT"):
        table = SETTINGS[setting]["methods"]
        for row, base in RIVALS.items():
            rival, plain = table[row], table[base]
            assert (rival.config, rival.init, rival.family) == (plain.config, plain.init, plain.family)
            assert rival.opts == (*plain.opts, *CAMERA_NORM_OPTS) and rival.label.startswith(plain.label)
    assert set(RIVALS) <= set(DEFAULT_METHODS)
    deps = {name: d for name, seed, d in plan("synthetic", ["mmt_cn", "canu_cn"], [0])}
    assert deps["mmt_cn"] == {"source": ("source", 0), "source_b": ("source_b", SECOND_SOURCE_SEED)}


@dataclass
class RecordingBench(Bench):
    """The runs a sweep asks for, with the dataset root / draws each would train on; trains nothing."""
    calls: list = None

    def ensure(self, name, seed, stems, folder=None, extra=(), deps_folder=None, eval_period=None):
        data = {s: d["root"] for s, d in self.draws.items()} if self.draws else self.root
        self.calls.append((name, seed, folder, deps_folder, eval_period, tuple(extra), data))
        return {"method": name, "seed": seed, "data": data}


def test_data_knob_sweep_regenerates_the_target_only_and_adapts_the_main_source_models(tmp_path, monkeypatch):
    import canu_plugin.data.synthetic as synthetic
    from canu_plugin.bench import sweeps
    generated = []
    monkeypatch.setattr(synthetic, "generate_domain", lambda root, name, **kw: generated.append((root, name, kw)))
    monkeypatch.setenv("FASTREID_DATASETS", str(tmp_path / "data"))
    bench = RecordingBench("synthetic", str(tmp_path / "out"), calls=[])
    out = sweeps.run_sweep(bench, "data.camera_shift", ["0.2", "0.8"], ["canu"], [0], str(tmp_path / "data"))
    swept = os.path.join(str(tmp_path / "data"), "sweeps", "camera_shift_0.2")
    assert generated == [(swept, "SynthB", {"camera_shift": 0.2})]  # the source domain is the main one
    value = sweeps.value_folder(bench, "data.camera_shift", "0.2")
    assert bench.calls[:3] == [("source", 0, None, None, None, (), None),  # the main table's source model ...
                               ("canu", 0, None, None, None, (), None),  # ... and its run at the default 0.8
                               ("canu", 0, value, bench.folder, 0, (), swept)]  # 0.2: its own SynthB, no override
    assert out["0.2"][("canu", 0)]["data"] == swept and out["0.8"][("canu", 0)]["data"] is None
    assert os.environ["FASTREID_DATASETS"] == str(tmp_path / "data")  # no run changed this process's root


def test_a_testbed_data_sweep_draws_each_seed_its_own_target_and_keeps_the_testbed_value_as_main(tmp_path, monkeypatch):
    """On a testbed the swept SynthB is the testbed's target recipe with the knob set, drawn per run seed
    (another data key than the main draw's), and the testbed's own value is the main table's runs."""
    import canu_plugin.data.synthetic as synthetic
    from canu_plugin.bench import sweeps
    from canu_plugin.bench.testbed import data_key, load_testbed
    generated = []
    monkeypatch.setattr(synthetic, "generate_domain", lambda root, name, **kw: generated.append((root, name, kw)))
    tb = load_testbed({"name": "t", "domains": {"camera_shift": 0.5, "images_per_camera": [3, 6]}})
    assert sweeps.data_default("data.camera_shift", tb) == "0.5" and sweeps.data_default("data.camera_shift") == "0.8"
    draws = {s: {"root": str(tmp_path / f"main{s}"), "key": data_key(tb, s)} for s in (0, 1)}
    bench = RecordingBench("synthetic", str(tmp_path / "out"), draws=draws, testbed=tb, calls=[])
    out = sweeps.run_sweep(bench, "data.camera_shift", ["0.2", "0.5"], ["pseudo"], [0, 1], None, jobs=2)
    value = sweeps.value_folder(bench, "data.camera_shift", "0.2")
    assert [(os.path.relpath(r, value), n, kw["seed"], kw["camera_shift"], kw["images_per_camera"])
            for r, n, kw in generated] == [(os.path.join("datasets", f"draw_{s}"), "SynthB", s, 0.2, [3, 6]) for s in (0, 1)]
    own = [c for c in bench.calls if c[2] == value]
    assert sorted((c[0], c[1]) for c in own) == [("pseudo", 0), ("pseudo", 1)] and all(c[3] == bench.folder for c in own)
    assert out["0.5"][("pseudo", 1)]["data"] == {0: draws[0]["root"], 1: draws[1]["root"]}  # the testbed's value: main
    assert out["0.2"][("pseudo", 1)]["data"][1] == os.path.join(value, "datasets", "draw_1")
    assert tb["domains"]["camera_shift"] == 0.5 and "camera_shift" not in tb["target"]  # the testbed is left as it was
    swept_tb = {**tb, "target": {"camera_shift": 0.2}}
    assert data_key(swept_tb, 1) != draws[1]["key"]


def test_sweep_report_pairs_each_value_with_the_reference_runs(tmp_path):
    """A reference method (the key does not touch it) is the main table's run at every value, so each value's
    section has the swept method's paired difference from it; without references there is none."""
    from canu_plugin.bench import sweeps
    from canu_plugin.bench.methods import SETTINGS
    from canu_plugin.cli.bench import report_sweep

    class FakeBench:
        setting, folder, extra, methods = "synthetic", str(tmp_path), (), SETTINGS["synthetic"]["methods"]

    def put(folder, method, seed, mAP):
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"{method}_s{seed}.json"), "w") as f:
            json.dump(bench_record(method, seed, mAP), f)

    for s in range(3):
        put(tmp_path, "pseudo", s, 20.0 + s)
        put(tmp_path, "canu", s, 21.0 + s)  # the config's mu 0.1: the main run serves that value
        put(sweeps.value_folder(FakeBench, "MODEL.CANU.MU", "1.0"), "canu", s, 25.0 + s + 0.5 * (s == 2))
    by_value = report_sweep(FakeBench, sweeps.Sweep("MODEL.CANU.MU", ("0.1", "1.0"), ("canu",), ("pseudo",)))
    assert set(by_value["1.0"]) == {("pseudo", s) for s in range(3)} | {("canu", s) for s in range(3)}
    assert by_value["1.0"][("canu", 0)]["final"]["mAP"] == 25.0 and by_value["0.1"][("canu", 0)]["final"]["mAP"] == 21.0
    text = (tmp_path / "sweeps" / "MODEL.CANU.MU" / "results.md").read_text()
    one = text[text.index("MODEL.CANU.MU = 1.0"):]
    assert "| canu - pseudo | 3 | +5.2 [" in one and "| canu - pseudo | 3 | +1.0 [+1.0, +1.0]" in text
    report_sweep(FakeBench, sweeps.Sweep("MODEL.CANU.MU", ("1.0",), ("canu",)))
    assert "canu - pseudo" not in (tmp_path / "sweeps" / "MODEL.CANU.MU" / "results.md").read_text()
    assert all(all(m in SETTINGS["synthetic"]["methods"] for m in s.methods + s.references) for s in sweeps.STANDARD)


def test_the_recorded_command_has_no_absolute_path_below_the_working_folder(tmp_path, monkeypatch):
    from canu_plugin.cli.bench import recorded_command
    monkeypatch.chdir(tmp_path)
    root = str(tmp_path / "datasets")
    assert recorded_command("make bench:", ["--root", root, "--seeds", "0"]) == "make bench: --root datasets --seeds 0"
