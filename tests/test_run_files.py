"""What a run writes: every per-epoch scalar once per epoch in metrics.json and in the TensorBoard
event file (read from the files, not from the in-memory storage), and final_results.json."""
import glob
import json
from collections import Counter

import pytest

from canu_plugin.engine.run_files import epoch_records, read_final_results, write_final_results

CANU = ["CLUSTERING.K1", "10", "CLUSTERING.K2", "3", "MODEL.CANU.ENABLED", "True", "MODEL.CANU.HIDDEN_DIM", "32",
        "TEST.EVAL_PERIOD", "1"]
PER_EPOCH = ("pseudo/num_clusters", "pseudo/mi_cam", "pseudo/cam_probe", "pseudo/epoch", "adv/epoch_disc_acc",
             "epoch", "time/epoch_train_s", "mAP", "cam_probe", "d_inter")


def _tensorboard_counts(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    counts = Counter()
    for path in glob.glob(str(folder / "events.out.tfevents.*")):
        acc = EventAccumulator(path, size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            counts[tag] += len(acc.Scalars(tag))
    return counts


def test_every_per_epoch_scalar_reaches_metrics_json_and_tensorboard(tiny_trainer, tmp_path):
    trainer = tiny_trainer("configs/synthetic/quick_pseudo.yml", tmp_path, *CANU)
    trainer.train()
    lines = [json.loads(line) for line in open(tmp_path / "metrics.json")]
    in_json = Counter(k for line in lines for k in line)
    in_tb = _tensorboard_counts(tmp_path)
    for key in PER_EPOCH:
        assert in_json[key] == 2, (key, in_json[key])  # two epochs: once each
        assert in_tb[key] == 2, (key, in_tb[key])
    first = next(line for line in lines if "pseudo/epoch" in line)
    assert first["pseudo/epoch"] == 0 and first["iteration"] == 0  # at the epoch's first iteration
    records = epoch_records(tmp_path)
    assert [r["epoch"] for r in records["pseudo"]] == [0, 1] and [r["epoch"] for r in records["epochs"]] == [1, 2]
    assert all("mAP" in r["results"] and r["train_s"] > 0 for r in records["epochs"])
    final = read_final_results(tmp_path)
    assert final["epoch"] == 2 and final["weights"] == "model_final.pth"
    assert final["results"]["SynthA"]["mAP"] == pytest.approx(records["epochs"][-1]["results"]["mAP"])


def test_acan_diagnostics_reach_the_writers(tiny_trainer, tmp_path):
    tiny = ["INPUT.SIZE_TRAIN", "[32, 16]", "INPUT.SIZE_TEST", "[32, 16]", "DATALOADER.NUM_WORKERS", "0",
            "MODEL.ACAN.PIDS_PER_GROUP", "4", "SOLVER.IMS_PER_BATCH", "16", "MODEL.ACAN.CAMERA_BATCH", "12",
            "MODEL.ACAN.HIDDEN_DIM", "16", "MODEL.ACAN.DIAG_IMAGES_PER_CAMERA", "5", "SOLVER.MAX_EPOCH", "2",
            "TEST.EVAL_PERIOD", "1"]
    trainer = tiny_trainer("configs/synthetic/acan_oce.yml", tmp_path, *tiny)
    trainer.iters_per_epoch, trainer.max_iter = 2, 4
    trainer.train()
    in_json = Counter(k for line in open(tmp_path / "metrics.json") for k in json.loads(line))
    in_tb = _tensorboard_counts(tmp_path)
    for key in ("acan/d_inter_SynthA", "acan/disc_acc", "adv/epoch_disc_acc"):
        assert in_json[key] == 2 and in_tb[key] == 2, key  # the last one comes after training: written too
    final = read_final_results(tmp_path)["results"]["SynthA"]  # ACAN tests on the pooled feature itself
    assert final["d_inter_pooled"] == pytest.approx(final["d_inter"], rel=1e-4)


def test_final_results_keep_one_test_set_under_its_name(tmp_path):
    write_final_results(str(tmp_path), {"mAP": 12.5, "Rank-1": 20.0, "note": "text"}, 3, ("SynthB",))
    assert read_final_results(str(tmp_path)) == {"epoch": 3, "weights": "model_final.pth",
                                                 "results": {"SynthB": {"mAP": 12.5, "Rank-1": 20.0}}}
    write_final_results(str(tmp_path), {"A": {"mAP": 1.0}, "B": {"mAP": 2.0}}, 4, ("A", "B"))
    assert read_final_results(str(tmp_path))["results"] == {"A": {"mAP": 1.0}, "B": {"mAP": 2.0}}
    assert read_final_results(str(tmp_path / "missing")) is None


def test_d_inter_pooled_is_measured_on_the_backbones_pooled_features(tiny_trainer, tmp_path):
    from fastreid.data.datasets import DATASET_REGISTRY
    from canu_plugin.engine import datasets_root
    from canu_plugin.engine.features import extract_features
    from canu_plugin.evaluation.camera_alignment import d_inter_camera
    trainer = tiny_trainer("configs/synthetic/quick_sup.yml", tmp_path, "SOLVER.MAX_EPOCH", "1")
    results = trainer.train()  # trained BNNeck statistics: the test feature is no longer the pooled one
    data = DATASET_REGISTRY.get("SynthA")(root=datasets_root())
    items = [it for it in data.query + data.gallery if it[1] >= 0]
    model = trainer.unwrapped_model
    pooled = extract_features(model, items, trainer.cfg, normalize=True,
                              forward=lambda b: model.backbone(model.preprocess_image(b)).mean((2, 3)))
    expected = d_inter_camera(pooled, [it[2] for it in items], normalize=True)
    assert results["d_inter_pooled"] == pytest.approx(expected, rel=1e-4)
    assert abs(results["d_inter_pooled"] - results["d_inter"]) > 1e-3  # the BNNeck changes the geometry
