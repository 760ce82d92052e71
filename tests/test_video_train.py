"""Tiny real runs on synthetic tracklets (CPU): ACAN with OCE through the trainer, the pseudo-label
loop (with CANU's conditional discriminator) clustering tracklet features, and the supervised clip loader."""
import json
import os

import pytest
import torch

from canu_plugin.engine import Trainer, seed_from_config, setup_cfg
from canu_plugin.engine.run_files import epoch_records
from canu_plugin.engine.video import build_video_train_loader
from canu_plugin.errors import CanuError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VIDEO_CONFIGS = os.path.join(REPO, "configs", "synthetic", "video")


def _train(config, out, *opts):
    cfg = setup_cfg(os.path.join(VIDEO_CONFIGS, config), ["MODEL.DEVICE", "cpu", "SEED", "0", *opts,
                                                          "OUTPUT_DIR", str(out)])
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    seed_from_config(cfg)  # as tools/train_net.py: the model's initialisation does not depend on earlier tests
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    return trainer, trainer.train()


def _records(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_tiny_acan_oce_run_on_tracklets(use_video_root, tmp_path):
    trainer, results = _train("quick_acan.yml", tmp_path, "SOLVER.STEPS", "[1]")  # every rate x0.1 after epoch 0
    model = trainer.unwrapped_model
    assert model.temporal_pool.method == "avg" and trainer.data_loader.dataset.seq_len == 3
    batch = next(iter(trainer.data_loader))
    assert batch["images"].shape[1:] == (3, 3, 32, 16) and set(batch["acan_part"].tolist()) == {0, 1}
    assert {"Rank-1", "Rank-5", "Rank-10", "Rank-20", "mAP", "cam_probe", "d_inter", "d_inter_pooled"} <= set(results)
    assert 0 < results["mAP"] <= 100 and results["Rank-20"] >= results["Rank-1"]
    storage = trainer.storage.histories()
    for key in ("loss_triplet", "loss_cam_adv", "cam_disc_acc"):
        assert key in storage and torch.isfinite(torch.tensor(storage[key].latest()))
    d_lr = {round(v, 8) for v, _ in storage["d_lr"].values()}  # the discriminator's rate follows the encoder's
    assert d_lr == {0.01, 0.001} and storage["d_lr"].latest() == pytest.approx(0.01 * storage["lr"].latest() / 3.5e-4)
    diag = _records(tmp_path / "acan_diagnostics.jsonl")[-1]  # tracklet features of train and test sets
    num_cameras = trainer.discriminators[0].classifier.out_features
    assert diag["d_inter_SynthVidB"] > 0 and len(diag["confusion"]) == num_cameras == trainer.data_loader.dataset.num_cameras


def test_pseudo_label_loop_with_canu_clusters_tracklets_for_one_epoch(use_video_root, tmp_path):
    trainer, results = _train("quick_pseudo.yml", tmp_path, "SOLVER.MAX_EPOCH", "1", "TEST.EVAL_PERIOD", "1",
                              # k-means: a fixed number of clusters, whatever an untrained model's features look like
                              "CLUSTERING.METHOD", "kmeans", "CLUSTERING.NUM_CLUSTERS", "6", "PSEUDO.ITERS_PER_EPOCH", "3",
                              "MODEL.CANU.ENABLED", "True", "MODEL.CANU.HIDDEN_DIM", "32")
    assert all(isinstance(paths, tuple) for paths, _, _ in trainer.target_set.items())  # the target set is tracklets
    log = epoch_records(tmp_path)["pseudo"]
    assert len(log) == 1 and log[0]["num_clusters"] == 6 and log[0]["num_gt_ids"] == 12 and "nmi_gt" in log[0]
    items = trainer.data_loader.dataset.img_items
    assert all(isinstance(paths, tuple) for paths, _, _ in items)  # clustered tracklets train as clips
    assert trainer.data_loader.dataset[0]["images"].shape == (3, 3, 32, 16)
    assert "Rank-20" in results and 0 < results["mAP"] <= 100
    assert "cam_disc_acc" in trainer.storage.histories()  # CANU's conditional discriminator trained on tracklets


def test_supervised_clip_loader_and_refusals(use_video_root):
    cfg = setup_cfg(os.path.join(REPO, "configs", "synthetic", "quick_sup.yml"),
                    ["MODEL.DEVICE", "cpu", "DATASETS.NAMES", '("SynthVidA",)', "VIDEO.SEQ_LEN", "2",
                     "SOLVER.IMS_PER_BATCH", "8", "DATALOADER.NUM_INSTANCE", "2"])
    batch = next(iter(build_video_train_loader(cfg, use_video_root)))
    assert batch["images"].shape == (8, 2, 3, 32, 16) and len(set(batch["targets"].tolist())) == 4
    with pytest.raises(CanuError, match="cannot be batched"):
        build_video_train_loader(setup_cfg("", ["MODEL.DEVICE", "cpu", "DATASETS.NAMES", '("SynthVidA",)',
                                                "VIDEO.SAMPLE", "all"]), use_video_root)
    with pytest.raises(CanuError, match="cannot train on tracklets"):
        Trainer.build_model(setup_cfg(os.path.join(REPO, "configs", "synthetic", "quick_mmt.yml"),
                                      ["MODEL.DEVICE", "cpu", "DATASETS.NAMES", '("SynthVidA",)']))
