"""The configs reproduce the reference recipes (MMT's and SSG's code): every benchmark config loads,
and the MMT / SSG ones carry the sampler, clustering rule and losses of their reference code."""
import glob
import os

import pytest

from canu_plugin.bench.methods import SETTINGS, default_methods
from canu_plugin.engine import setup_cfg

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MMT = sorted(glob.glob(os.path.join(REPO, "configs", "mmt", "*mmt_*.yml")))
SSG = sorted(glob.glob(os.path.join(REPO, "configs", "ssg", "*ssg_*.yml")))


def _load(path):
    return setup_cfg(path, ["MODEL.DEVICE", "cpu"])


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_every_benchmark_config_loads(setting):
    methods = SETTINGS[setting]["methods"]
    for name in default_methods(setting):
        cfg = _load(os.path.join(REPO, methods[name].config))
        if setting != "synthetic" and methods[name].family in ("clustering", "mmt", "ssg", "acan"):
            assert SETTINGS[setting]["target"] in cfg.DATASETS.NAMES, (setting, name)
    assert ("ssg" in default_methods(setting)) == (setting != "synthetic-video")


def test_msmt_settings_have_table_two_mmt_and_ssg_rows():
    for setting, source in (("M2MSMT", "Market1501"), ("D2MSMT", "DukeMTMC")):
        methods = SETTINGS[setting]["methods"]
        cfg = _load(os.path.join(REPO, methods["canu_mmt"].config))
        assert cfg.DATASETS.NAMES == ("MSMT17",) and cfg.MODEL.CANU.ENABLED and cfg.MODEL.CANU.CONDITIONAL
        assert all(source in w for w in cfg.MODEL.MMT.SOURCE_WEIGHTS)
        ssg, canu_ssg = (_load(os.path.join(REPO, methods[m].config)) for m in ("ssg", "canu_ssg"))
        for c in (ssg, canu_ssg):
            assert c.MODEL.META_ARCHITECTURE == "SSG" and c.DATASETS.NAMES == c.DATASETS.TESTS == ("MSMT17",)
            assert source in c.MODEL.WEIGHTS and c.PSEUDO.SOURCE_DATASETS == (source,)
        assert not ssg.MODEL.CANU.ENABLED and canu_ssg.MODEL.CANU.CONDITIONAL and canu_ssg.MODEL.CANU.MU == 0.05


@pytest.mark.parametrize("path", MMT, ids=os.path.basename)
def test_mmt_configs_follow_mmts_code(path):
    cfg = _load(path)
    c = cfg.CLUSTERING
    assert cfg.DATALOADER.SAMPLER_TRAIN == "BalancedIdentitySampler"
    assert (c.K1, c.K2, c.EPS_RULE, c.RHO, c.DIST_NORM, c.MIN_SAMPLES) == (21, 6, "quantile_once", 1.6e-3, "row_max", 4)
    assert cfg.PSEUDO.ITERS_PER_EPOCH == 400 and cfg.SOLVER.MAX_EPOCH == 40 and cfg.SOLVER.BASE_LR == 3.5e-4
    assert (cfg.MODEL.MMT.ALPHA, cfg.MODEL.MMT.CE_SOFT_WEIGHT, cfg.MODEL.MMT.TRI_SOFT_WEIGHT) == (0.999, 0.5, 0.8)
    assert cfg.MODEL.MMT.RESET_OPTIMIZER  # a new Adam after each clustering


@pytest.mark.parametrize("path", SSG, ids=os.path.basename)
def test_ssg_configs_follow_ssgs_code(path):
    cfg = _load(path)
    c = cfg.CLUSTERING
    assert (c.K1, c.K2, c.EPS_RULE, c.RHO, c.DIST_NORM, c.SOURCE_LAMBDA) == (21, 6, "quantile_once", 1.6e-3, "row_max", 0.1)
    assert cfg.PSEUDO.FLIP and cfg.TEST.FLIP.ENABLED and len(cfg.PSEUDO.SOURCE_DATASETS) == 1
    assert cfg.PSEUDO.SOURCE_DATASETS[0] not in cfg.DATASETS.NAMES  # the source, not the target
    assert (cfg.MODEL.SSG.EMBED_DIM, cfg.MODEL.SSG.TRIPLET, cfg.MODEL.LOSSES.TRI.MARGIN) == (2048, "all_positives", 0.5)
    assert cfg.SOLVER.OPT == "SGD" and cfg.SOLVER.BASE_LR == 6e-5


def test_synthetic_clustering_was_chosen_on_the_source():
    """The synthetic configs' clustering values are those the source-domain sweep picked."""
    import json
    with open(os.path.join(REPO, "docs", "tuning", "synthA_source_s0.json")) as f:
        sweep = json.load(f)
    best_fixed, best_quantile = sweep["fixed"][0], sweep["quantile"][0]
    pseudo = _load(os.path.join(REPO, "configs", "synthetic", "uda_pseudo_A2B.yml")).CLUSTERING
    assert (pseudo.K1, pseudo.EPS) == (best_fixed["k1"], best_fixed["eps"])
    for name in ("mmt_A2B", "ssg_A2B"):
        c = _load(os.path.join(REPO, "configs", "synthetic", name + ".yml")).CLUSTERING
        assert (c.K1, c.RHO, c.EPS_RULE) == (best_quantile["k1"], best_quantile["rho"], "quantile_once")
