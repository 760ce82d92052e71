"""A real-dataset user's first run: ``canu-train --root``, and a missing dataset that only the
config's test list asks for (its error names the key and the override that drops it)."""
import os
import re
import subprocess
import sys

import pytest

from canu_plugin.engine import Trainer, setup_cfg
from canu_plugin.engine.setup import check_config_datasets
from canu_plugin.errors import CanuError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = os.path.join(REPO, "configs", "synthetic", "quick_sup.yml")
ON_MARKET = ["DATASETS.NAMES", '("Market1501",)', "DATASETS.TESTS", '("Market1501",)']


@pytest.fixture
def market_only(synth_root, tmp_path):
    """A dataset root holding Market-1501 only (the tiny SynthA in the release's layout and names)."""
    root = tmp_path / "reid"
    root.mkdir()
    os.symlink(os.path.join(synth_root, "SynthA"), root / "Market-1501-v15.09.15")
    return str(root)


def canu_train(datasets_env, *args):
    """Run tools/train_net.py (= canu-train) as a user would, with ``$FASTREID_DATASETS=datasets_env``."""
    env = dict(os.environ, FASTREID_DATASETS=datasets_env, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, os.path.join(REPO, "tools", "train_net.py"), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_root_flag_finds_the_datasets_the_layout_error_asks_for(market_only, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    args = ["--config-file", QUICK, *ON_MARKET, "SOLVER.MAX_EPOCH", "1", "TEST.EVAL_PERIOD", "1"]
    failed = canu_train(str(empty), *args, "OUTPUT_DIR", str(tmp_path / "a"))
    assert failed.returncode == 2, failed.stderr[-2000:]
    error = [ln for ln in failed.stderr.splitlines() if ln.startswith("error: ")][-1]
    assert "Market1501" in error and "--root DIR (canu-train" in error  # the fix it suggests ...
    ok = canu_train(str(empty), "--root", market_only, *args, "OUTPUT_DIR", str(tmp_path / "b"))
    assert ok.returncode == 0, ok.stderr[-3000:]  # ... works: the datasets under --root are found
    assert "| Market1501" in ok.stdout + ok.stderr and os.path.isfile(tmp_path / "b" / "model_final.pth")


def test_missing_test_sets_name_the_key_and_the_override_that_drops_them(market_only, tmp_path, monkeypatch):
    from canu_plugin.engine import set_datasets_root
    import fastreid.data.build as build
    monkeypatch.setattr(build, "_root", build._root)
    monkeypatch.setenv("FASTREID_DATASETS", market_only)
    set_datasets_root(market_only)
    config = os.path.join(REPO, "configs", "Market1501", "sup_R50.yml")
    opts = ["MODEL.DEVICE", "cpu", "MODEL.BACKBONE.PRETRAIN", "False", "OUTPUT_DIR", str(tmp_path / "o")]
    assert setup_cfg(config, opts).DATASETS.TESTS == ("Market1501",)  # runs with Market-1501 alone
    opts += ["DATASETS.TESTS", '("Market1501", "DukeMTMC", "MSMT17")']  # a user asks for the other two as well
    cfg = setup_cfg(config, opts)
    with pytest.raises(CanuError) as err:
        Trainer(cfg)
    msg = str(err.value)
    assert "DATASETS.TESTS" in msg and "MSMT17" in msg and "DukeMTMC" in msg and "evaluates on" in msg
    override = re.search(r"add `(DATASETS\.TESTS) '(.*?)'` to the command line", msg)
    assert override and override.group(2) == '("Market1501",)'
    fixed = setup_cfg(config, [*opts, override.group(1), override.group(2)])  # the override, as a user types it
    check_config_datasets(fixed, market_only)  # nothing missing now
    assert fixed.DATASETS.TESTS == ("Market1501",)


def test_missing_training_set_names_its_key(market_only):
    cfg = setup_cfg(QUICK, ["DATASETS.NAMES", '("MSMT17",)'])
    with pytest.raises(CanuError, match=r"MSMT17 of DATASETS.NAMES .*training set.*choose a config"):
        check_config_datasets(cfg, market_only)
