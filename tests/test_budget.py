"""The budget curve: per-epoch mAP over seeds from the runs' metrics.json, the paired gain still to
come, the levelled-off epoch, and the command on real (written) run folders."""
import json

import pytest

from canu_plugin.bench.budget import curve, curve_table, levelled_off
from canu_plugin.errors import CanuError

# mAP per evaluated epoch for three seeds: +5 to epoch 4, then +0.5, then +0.2
MAPS = {0: {2: 10.0, 4: 15.0, 6: 15.5, 8: 15.7}, 1: {2: 12.0, 4: 17.0, 6: 17.4, 8: 17.6},
        2: {2: 11.0, 4: 16.0, 6: 16.6, 8: 16.8}}


def _run(folder, seed, maps):
    folder.mkdir()
    (folder / "config.yaml").write_text(f"SEED: {seed}\n")
    lines = [{"epoch": float(e), "iteration": 17 * e, "loss_cls": 1.0} for e in range(1, 9)]
    lines += [{"epoch": float(e), "iteration": 17 * e, "Rank-1": m + 3, "mAP": m} for e, m in maps.items()]
    (folder / "metrics.json").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return str(folder)


def test_curve_pairs_seeds_and_finds_where_it_levels_off(tmp_path):
    runs = {s: _run(tmp_path / f"s{s}", s, m) for s, m in MAPS.items()}
    rows = curve(runs)
    assert [r["epoch"] for r in rows] == [2, 4, 6, 8]
    assert rows[0]["stats"]["mean"] == pytest.approx(11.0) and rows[0]["stats"]["sd"] == pytest.approx(1.0)
    assert rows[1]["to_come"]["mean"] == pytest.approx((0.7 + 0.6 + 0.8) / 3)
    assert rows[1]["to_come"]["lo"] > 0  # a small gain, but the same sign in every seed
    assert rows[-1]["to_come"]["mean"] == 0
    assert levelled_off(rows, tolerance=1.0) == 4 and levelled_off(rows, tolerance=0.5) == 6
    table = curve_table(rows, iters_per_epoch=17)
    assert "| 4 | 68 | 16.0 ± 1.0 | +0.7 [" in table
    assert curve({0: runs[0]}, "Rank-1")[0]["stats"]["mean"] == pytest.approx(13.0)


def test_a_run_without_evaluations_is_refused(tmp_path):
    folder = tmp_path / "noeval"
    folder.mkdir()
    (folder / "metrics.json").write_text(json.dumps({"epoch": 1.0, "iteration": 17, "loss_cls": 1.0}) + "\n")
    with pytest.raises(CanuError, match="TEST.EVAL_PERIOD > 0"):
        curve({0: str(folder)})


def test_command_reads_seeds_from_the_runs_and_writes_the_table(tmp_path, capsys):
    import importlib.util
    import os
    spec = importlib.util.spec_from_file_location("budget_curve", os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools", "budget_curve.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    runs = [_run(tmp_path / f"s{s}", s, m) for s, m in MAPS.items()]
    assert tool.main([*runs, "--out", str(tmp_path / "c.md")]) == 0
    assert "Levelled off (mean gain still to come < 1 mAP points) at epoch 4." in (tmp_path / "c.md").read_text()
    with pytest.raises(SystemExit):
        tool.main([str(tmp_path / "missing")])
    assert "config.yaml is missing" in capsys.readouterr().err
