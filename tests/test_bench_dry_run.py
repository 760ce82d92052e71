"""``canu-bench --dry-run``: the runs in order with what each starts from, each run's config, length and
folder, and the totals; on the fakes of Market-1501 and DukeMTMC-reID only, and nothing is trained or written."""
import json
import os
import re

import pytest

from canu_plugin.cli.bench import main
from canu_plugin.data.fakes import write_fakes

M2D = ["--setting", "M2D", "--methods", "source", "mmt", "canu_mmt", "--seeds", "0", "--dry-run"]


@pytest.fixture(scope="module")
def market_duke(tmp_path_factory):
    """A dataset root with the fakes of Market-1501 and DukeMTMC-reID only (48 training images each)."""
    return write_fakes(str(tmp_path_factory.mktemp("reid")), ("Market1501", "DukeMTMC"))


def _blocks(out):
    """{stem: {field: value}} of the printed plan, and the stems in printed order."""
    runs, order = {}, []
    for block in re.split(r"\n(?= ?\d+\. )", out.split("\n\n")[1]):
        head, *fields = block.strip().splitlines()
        stem = re.match(r"\d+\. (\S+):", head).group(1)
        order.append(stem)
        runs[stem] = {k.strip(): v.strip() for k, v in (f.split(": ", 1) for f in fields)} | {"head": head}
    return runs, order


def test_dry_run_lists_the_runs_in_order_with_their_dependencies_and_length(market_duke, tmp_path, capsys):
    out_dir = tmp_path / "results"
    assert main([*M2D, "--root", market_duke, "--output", str(out_dir), "--opts", "SOLVER.IMS_PER_BATCH", "16"]) == 0
    out = capsys.readouterr().out
    runs, order = _blocks(out)
    assert order == ["source_s0", "source_b_s100", "mmt_s0", "canu_mmt_s0"]  # dependencies first
    assert runs["source_s0"]["after"] == "-"
    assert runs["canu_mmt_s0"]["after"] == "source_s0 (#1), source_b_s100 (#2)"
    assert runs["source_s0"]["config"] == "configs/Market1501/sup_R50.yml"
    assert runs["canu_mmt_s0"]["config"] == "configs/mmt/canu_mmt_M2D.yml"
    # supervised: the 48 fake Market images the loader reads // batch 16; MMT: PSEUDO.ITERS_PER_EPOCH 400
    assert runs["source_s0"]["length"] == "120 epochs x 3 iterations x batch 16"
    assert runs["mmt_s0"]["length"] == "40 epochs x 400 iterations x batch 16"
    assert runs["mmt_s0"]["writes"].startswith(os.path.join(str(out_dir), "M2D", "runs", "mmt_s0"))
    assert "total: 4 runs, 4 to train (0 finished), 32,720 iterations, 523,520 training images" in out
    assert "GPU time, an estimate (not measured)" in out
    assert not out_dir.exists()  # nothing written


def test_finished_runs_are_marked_and_left_out_of_the_totals(market_duke, tmp_path, capsys):
    folder = tmp_path / "results" / "M2D"
    folder.mkdir(parents=True)
    (folder / "source_s0.json").write_text(json.dumps({"method": "source"}))
    assert main([*M2D, "--root", market_duke, "--output", str(tmp_path / "results"),
                 "--opts", "SOLVER.IMS_PER_BATCH", "16"]) == 0
    out = capsys.readouterr().out
    runs, _ = _blocks(out)
    assert "[finished: reused, not trained again]" in runs["source_s0"]["head"]
    assert "total: 4 runs, 3 to train (1 finished), 32,360 iterations" in out


def test_a_dataset_not_under_the_root_is_sized_from_the_release(tmp_path, capsys):
    assert main(["--setting", "M2D", "--methods", "upper", "--seeds", "0", "--dry-run", "--root",
                 str(tmp_path / "empty"), "--output", str(tmp_path / "results")]) == 0
    runs, _ = _blocks(capsys.readouterr().out)
    assert runs["upper_s0"]["length"].startswith("120 epochs x 258 iterations x batch 64 (iterations from the "
                                                 "release's image count")  # DukeMTMC-reID: 16,522 // 64


def test_dry_run_refuses_what_it_does_not_list(market_duke, capsys):
    with pytest.raises(SystemExit) as e:
        main([*M2D, "--root", market_duke, "--sweep", "MODEL.CANU.MU", "0.1"])
    assert e.value.code == 2 and "--dry-run lists the main table's runs" in capsys.readouterr().err
