"""Every shipped config that uses a real dataset (Market-1501, DukeMTMC-reID, MSMT17, MARS,
DukeMTMC-SI-Tracklet, ...) trains for one tiny iteration and evaluates, on layout-faithful fakes of
the releases (canu_plugin.data.fakes): a config, a loader or a layout check that breaks shows here,
not after the download of a real dataset."""
import glob
import os

import pytest

from canu_plugin.data.datasets import PRETRAIN_DOMAINS
from canu_plugin.data.fakes import WRITERS
from canu_plugin.engine import Trainer, seed_from_config, setup_cfg
from canu_plugin.engine.run_files import read_final_results

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYNTHETIC = {"SynthA", "SynthB", "SynthVidA", "SynthVidB", *(f"SynthPre{k}" for k in range(PRETRAIN_DOMAINS))}


def _leaf_configs():
    """Every shipped config except the Base-*.yml files and the benchmark's testbed files
    (``configs/synthetic/testbeds/``: knobs of the synthetic benchmark, not fast-reid configs)."""
    paths = glob.glob(os.path.join(REPO, "configs", "**", "*.yml"), recursive=True)
    testbeds = os.path.join(REPO, "configs", "synthetic", "testbeds")
    return sorted(os.path.relpath(p, REPO) for p in paths
                  if not os.path.basename(p).startswith("Base-") and os.path.dirname(p) != testbeds)


def _datasets(cfg):
    return {*cfg.DATASETS.NAMES, *cfg.DATASETS.TESTS, *cfg.PSEUDO.SOURCE_DATASETS}


REAL_CONFIGS = [p for p in _leaf_configs() if not p.startswith(os.path.join("configs", "synthetic"))]


def tiny_run_overrides(out):
    """``KEY VALUE`` overrides that scale any shipped config down to one tiny CPU iteration on the
    fakes, keeping its method, losses, sampler and schedule kind (the only helper that does so):

    - model: ResNet-18 (512-d), no ImageNet download, no MODEL.WEIGHTS / MMT source checkpoints
      (the fakes have no trained source model; weight loading is tested in test_model_zoo.py);
    - input 32x16, batch 8 with K = 2 (ACAN: 4 ids per group, 6 images for the camera term;
      video: 2-frame clips), no AMP, no workers;
    - one epoch of one pseudo-label iteration (supervised: one pass over the fake train set),
      then the evaluation; clustering neighbourhoods k1 = 4, k2 = 2, 2 samples per cluster, and under
      the quantile eps rules (MMT, SSG) eps from the closest 5 % of pairs (RHO 0.05: the real configs
      take 0.16 %, which on ~50 fake images is about two pairs, and SSG then leaves every sample out);
    SEED 0 (the same start whatever ran before).
    """
    return ["MODEL.DEVICE", "cpu", "MODEL.BACKBONE.DEPTH", "18x", "MODEL.BACKBONE.FEAT_DIM", "512",
            "MODEL.BACKBONE.PRETRAIN", "False", "MODEL.WEIGHTS", "", "MODEL.MMT.SOURCE_WEIGHTS", "[]",
            "INPUT.SIZE_TRAIN", "[32, 16]", "INPUT.SIZE_TEST", "[32, 16]", "INPUT.PADDING.SIZE", "2",
            "SOLVER.IMS_PER_BATCH", "8", "DATALOADER.NUM_INSTANCE", "2", "DATALOADER.NUM_WORKERS", "0",
            "MODEL.ACAN.PIDS_PER_GROUP", "4", "MODEL.ACAN.CAMERA_BATCH", "6", "VIDEO.SEQ_LEN", "2",
            "SOLVER.MAX_EPOCH", "1", "SOLVER.AMP.ENABLED", "False", "SOLVER.WARMUP_ITERS", "0",
            "SOLVER.CHECKPOINT_PERIOD", "1", "TEST.EVAL_PERIOD", "1", "TEST.IMS_PER_BATCH", "16",
            "PSEUDO.ITERS_PER_EPOCH", "1", "CLUSTERING.K1", "4", "CLUSTERING.K2", "2", "CLUSTERING.MIN_SAMPLES", "2",
            "CLUSTERING.RHO", "0.05",
            "CUDNN_BENCHMARK", "False", "SEED", "0", "OUTPUT_DIR", str(out)]


def test_every_shipped_config_is_run_here_or_synthetic():
    for path in _leaf_configs():
        names = _datasets(setup_cfg(os.path.join(REPO, path), ["MODEL.DEVICE", "cpu"]))
        if path in REAL_CONFIGS:
            assert names and names <= set(WRITERS), (path, names - set(WRITERS))  # a fake for every dataset
        else:
            assert names <= SYNTHETIC, (path, names)
    assert len(REAL_CONFIGS) >= 56


@pytest.mark.parametrize("config", REAL_CONFIGS)
def test_shipped_config_runs_one_tiny_iteration(config, use_fake_root, tmp_path):
    opts = tiny_run_overrides(tmp_path / "out")
    if config.startswith("configs/ssg/"):  # SSG's last stride 2: 64x32 gives the 2x1 map its two halves need
        opts += ["INPUT.SIZE_TRAIN", "[64, 32]", "INPUT.SIZE_TEST", "[64, 32]"]
    cfg = setup_cfg(os.path.join(REPO, config), opts)
    assert cfg.MODEL.BACKBONE.LAST_STRIDE == 2 or not config.startswith("configs/ssg/")
    os.makedirs(cfg.OUTPUT_DIR)
    seed_from_config(cfg)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    record = read_final_results(cfg.OUTPUT_DIR)  # every test set evaluated after the epoch
    assert record["epoch"] == 1 and set(record["results"]) == set(cfg.DATASETS.TESTS), record
    assert all(0 <= r["Rank-1"] <= 100 and r["mAP"] > 0 for r in record["results"].values())
    assert os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "model_final.pth"))
