"""tools/benchmark.py: run plan, table cells, plots, and a tiny real sweep that resumes."""
import json
import os
import subprocess
import sys

import pytest

from canu_plugin.bench.methods import SECOND_SOURCE_SEED, SETTINGS, plan
from canu_plugin.bench.plots import curves, montage
from canu_plugin.bench.report import cell, markdown_table
from canu_plugin.errors import CanuError

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


def test_cells_and_table():
    assert cell([1.0, 3.0], 1) == "2.0 ± 1.0" and cell([2.5], 2) == "2.50" and cell([None], 1) == "-"
    rec = {"label": "row", "seed": 0, "final": {"mAP": 10.0}, "pseudo": [], "disc": [], "epochs": []}
    table = markdown_table({("m", 0): rec, ("m", 1): {**rec, "seed": 1, "final": {"mAP": 20.0}}}, ["m"])
    assert "| row | 0,1 | 15.0 ± 5.0 |" in table


def test_plots_write_pngs(tmp_path):
    from PIL import Image
    recs = {("a", s): {"label": "A", "family": "clustering", "target": "T",
                       "pseudo": [{"epoch": e, "mi_cam": 1.0 - 0.1 * e - s} for e in range(3)]} for s in (0, 1)}
    path = curves(recs, ["a"], ["clustering"], lambda r: {p["epoch"]: p["mi_cam"] for p in r["pseudo"]}, "MI", "t",
                  str(tmp_path / "c.png"))
    assert Image.open(path).size[0] > 200
    assert curves(recs, ["a"], ["mmt"], lambda r: {}, "y", "t", str(tmp_path / "none.png")) is None
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
    table = (folder / "results.md").read_text()
    assert "pseudo-label baseline + CANU" in table and "direct transfer" in table
    assert (folder / "plots" / "mi_per_epoch.png").is_file() and (folder / "plots" / "map_per_epoch.png").is_file()
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0 and "0 run(s) done" in again.stdout  # finished runs are not redone
    other = subprocess.run(cmd + ["MODEL.CANU.MU", "0.3"], cwd=REPO, capture_output=True, text=True, env=env,
                           timeout=600)
    assert other.returncode == 2 and "run with other options" in other.stderr  # not reused under another label
    # killed right after model_final.pth, before the run's records: the rerun takes the final model's numbers
    (folder / "canu_s0.json").unlink()
    (folder / "runs" / "canu_s0" / "final_results.json").unlink()
    resumed = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((folder / "canu_s0.json").read_text())["final"]["mAP"] == pytest.approx(rec["final"]["mAP"])


def test_remade_report_keeps_the_sweep_command(tmp_path):
    from canu_plugin.bench.report import write_report
    rec = {"method": "m", "label": "row", "seed": 0, "final": {"mAP": 1.0}, "pseudo": [], "disc": [], "epochs": []}
    (tmp_path / "m_s0.json").write_text(json.dumps(rec))
    write_report(str(tmp_path), ["m"], command="python tools/benchmark.py --seeds 0")
    write_report(str(tmp_path), ["m"])  # --report-only
    assert (tmp_path / "results.md").read_text().startswith("Command: `python tools/benchmark.py --seeds 0`")
