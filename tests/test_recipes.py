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
            target = SETTINGS[setting]["target"]  # MMT's MSMT17 recipes train on train + val (MSMT17TrainVal)
            assert any(n in (target, target + "TrainVal") for n in cfg.DATASETS.NAMES), (setting, name)
    assert ("ssg" in default_methods(setting)) == (setting != "synthetic-video")


def test_msmt_settings_have_table_two_mmt_and_ssg_rows():
    for setting, source in (("M2MSMT", "Market1501"), ("D2MSMT", "DukeMTMC")):
        methods = SETTINGS[setting]["methods"]
        cfg = _load(os.path.join(REPO, methods["canu_mmt"].config))
        assert cfg.DATASETS.NAMES == ("MSMT17TrainVal",) and cfg.MODEL.CANU.ENABLED and cfg.MODEL.CANU.CONDITIONAL
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
    assert cfg.PSEUDO.RESET_OPTIMIZER  # a new Adam after each clustering


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
    best_quantile = sweep["quantile"][0]
    for name in ("uda_pseudo_A2B", "mmt_A2B", "ssg_A2B", "usl_pseudo_B"):
        c = _load(os.path.join(REPO, "configs", "synthetic", name + ".yml")).CLUSTERING
        assert (c.K1, c.RHO, c.EPS_RULE) == (best_quantile["k1"], best_quantile["rho"], "quantile_once")


BASELINE_REAL = sorted(glob.glob(os.path.join(REPO, "configs", "uda", "*.yml"))
                       + glob.glob(os.path.join(REPO, "configs", "usl", "*.yml")))
BASELINE_SYNTH = [os.path.join(REPO, "configs", "synthetic", n + ".yml")
                  for n in ("uda_pseudo_A2B", "uda_adv_A2B", "uda_canu_A2B", "usl_pseudo_B", "usl_adv_B", "usl_canu_B")]


@pytest.mark.parametrize("path", BASELINE_REAL + BASELINE_SYNTH, ids=os.path.basename)
def test_the_baseline_is_mmts_clustering_baseline(path):
    """MMT's examples/base_train_dbscan.py (ClusterBaseTrainer): its sampler, soft-margin triplet on the
    pooled feature, label-smoothed CE, eps fixed at the first clustering from the rho quantile of the
    row-max-normalised Jaccard distances, and a new Adam at every clustering; +Adv, +CANU and USL inherit it."""
    cfg = _load(path)
    c, loss = cfg.CLUSTERING, cfg.MODEL.LOSSES
    assert cfg.MODEL.META_ARCHITECTURE == "PseudoBaseline" and cfg.PSEUDO.RESET_OPTIMIZER
    assert cfg.DATALOADER.SAMPLER_TRAIN == "BalancedIdentitySampler" and cfg.DATALOADER.NUM_INSTANCE == 4
    assert (loss.TRI.MARGIN, loss.TRI.HARD_MINING, loss.CE.EPSILON, cfg.MODEL.HEADS.NECK_FEAT) == (0.0, True, 0.1, "before")
    assert (c.EPS_RULE, c.DIST_NORM, c.K2, c.MIN_SAMPLES) == ("quantile_once", "row_max", 6, 4)
    if path in BASELINE_REAL:  # MMT's k1 20 (+ the sample), rho 1.6e-3, Adam 3.5e-4 constant, 40 x 400
        assert (c.K1, c.RHO, cfg.SOLVER.OPT, cfg.SOLVER.BASE_LR) == (21, 1.6e-3, "Adam", 3.5e-4)
        assert cfg.SOLVER.GAMMA == 1.0 and (cfg.SOLVER.MAX_EPOCH, cfg.PSEUDO.ITERS_PER_EPOCH) == (40, 400)


@pytest.mark.parametrize("path", SSG + [os.path.join(REPO, "configs", "synthetic", n + ".yml")
                                       for n in ("ssg_A2B", "adv_ssg_A2B", "canu_ssg_A2B")], ids=os.path.basename)
def test_ssg_keeps_last_stride_2_and_one_optimizer(path):
    """SSG's ResNet keeps torchvision's last stride 2 (its 8x4 map at 256x128 is split in halves) and its code
    keeps one optimizer for every round, with a plain identity sampler."""
    cfg = _load(path)
    assert cfg.MODEL.BACKBONE.LAST_STRIDE == 2 and not cfg.PSEUDO.RESET_OPTIMIZER
    assert cfg.DATALOADER.SAMPLER_TRAIN == "NaiveIdentitySampler"


def test_no_config_repeats_a_key():
    """YAML keeps the last of two equal keys without a word: a second ``MODEL:`` block would silently drop
    the first one's values."""
    import yaml

    class Strict(yaml.SafeLoader):
        pass

    def mapping(loader, node, deep=False):
        keys = [loader.construct_object(k, deep=deep) for k, _ in node.value]
        repeated = sorted({k for k in keys if keys.count(k) > 1})
        assert not repeated, f"{node.start_mark}: repeated key(s) {repeated}"
        return yaml.SafeLoader.construct_mapping(loader, node, deep)

    Strict.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    paths = glob.glob(os.path.join(REPO, "configs", "**", "*.yml"), recursive=True)
    assert len(paths) > 50
    for path in paths:
        with open(path) as f:
            yaml.load(f, Strict)
