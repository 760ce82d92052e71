"""ACAN diagnostics: d_inter-camera, the camera confusion matrix, its plot and the hook."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import canu_plugin  # noqa: F401
from canu_plugin.engine.diagnostic_hooks import ACANDiagnosticsHook
from canu_plugin.evaluation import camera_alignment as CA


def _d_by_hand(feats, cams, normalize):
    feats = np.asarray(feats, dtype=float)
    if normalize:
        feats = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    overall = feats.mean(0)
    uniq = sorted(set(cams))
    return sum(np.linalg.norm(feats[[c == u for c in cams]].mean(0) - overall) for u in uniq) / len(uniq)


def test_d_inter_camera_by_hand():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(40, 5)) * rng.uniform(0.5, 3.0, size=(40, 1))
    cams = rng.choice(["c1", "c2", "c7"], size=40, p=[0.5, 0.3, 0.2]).tolist()
    for normalize in (True, False):
        assert CA.d_inter_camera(feats, cams, normalize) == pytest.approx(_d_by_hand(feats, cams, normalize))
    assert CA.d_inter_camera(torch.tensor(feats), torch.tensor([len(c) for c in cams])) == pytest.approx(
        _d_by_hand(feats, [0] * 40, True))  # one camera: the camera mean is the mean


def test_d_inter_camera_known_values():
    e = np.eye(3)
    two = np.stack([e[0], e[0], e[1], e[1]])          # camera means at e0 and e1, overall mean at their middle
    assert CA.d_inter_camera(two, [0, 0, 1, 1]) == pytest.approx(np.sqrt(0.5))
    aligned = np.stack([e[0], e[1], e[0], e[1]])      # both cameras hold the same distribution
    assert CA.d_inter_camera(aligned, [0, 0, 1, 1]) == pytest.approx(0.0, abs=1e-12)
    scaled = two * np.array([[1.0], [3.0], [1.0], [5.0]])
    assert CA.d_inter_camera(scaled, [0, 0, 1, 1]) == pytest.approx(np.sqrt(0.5))  # normalised first
    # raw: camera means 2*e0 and 3*e1, overall mean (1, 1.5, 0): both at distance sqrt(1 + 1.5^2)
    assert CA.d_inter_camera(scaled, [0, 0, 1, 1], normalize=False) == pytest.approx(np.sqrt(3.25))
    with pytest.raises(ValueError, match="3 camera ids"):
        CA.d_inter_camera(two, [0, 0, 1])
    with pytest.raises(ValueError, match="non-empty"):
        CA.d_inter_camera(np.zeros((0, 3)), [])


def test_camera_confusion_by_hand():
    logits = torch.tensor([[5.0, 0, 0], [0, 5, 0], [0, 5, 0], [0, 0, 5], [5, 0, 0], [0, 0, 5]])
    cams = torch.tensor([0, 0, 0, 1, 1, 1])
    m = CA.camera_confusion(logits, cams, 3)
    assert np.allclose(m, [[1 / 3, 2 / 3, 0], [1 / 3, 0, 2 / 3], [0, 0, 0]])  # camera 2 has no sample
    assert np.allclose(CA.camera_confusion(logits.argmax(1), cams, 3), m)
    soft = CA.camera_confusion(logits, cams, 3, soft=True)
    p = torch.softmax(logits.double(), 1).numpy()
    assert np.allclose(soft[0], p[:3].mean(0)) and np.allclose(soft[:2].sum(1), 1.0)
    with pytest.raises(ValueError, match="columns"):
        CA.camera_confusion(logits, cams, 4)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        CA.camera_confusion(logits, torch.tensor([0, 0, 0, 1, 1, 3]), 3)
    with pytest.raises(ValueError, match="predicted cameras"):
        CA.camera_confusion(torch.tensor([0, 1, 2, 3, 0, 0]), cams, 3)
    with pytest.raises(ValueError, match="soft=True"):
        CA.camera_confusion(logits.argmax(1), cams, 3, soft=True)


def test_plot_confusion_writes_a_png(tmp_path):
    path = CA.plot_confusion(np.full((4, 4), 0.25), str(tmp_path / "m.png"), "title")
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size[0] > 100
    with pytest.raises(ValueError, match="square"):
        CA.plot_confusion(np.zeros((2, 3)), str(tmp_path / "bad.png"))


def test_balanced_sample():
    cams = [0] * 10 + [1] * 3 + [2] * 7
    idx = CA.balanced_sample(cams, 5, seed=1)
    assert np.bincount(np.asarray(cams)[idx]).tolist() == [5, 3, 5]
    assert np.array_equal(idx, CA.balanced_sample(cams, 5, seed=1)) and list(idx) == sorted(idx)


TINY = ["INPUT.SIZE_TRAIN", "[32, 16]", "INPUT.SIZE_TEST", "[32, 16]", "DATALOADER.NUM_WORKERS", "0",
        "MODEL.ACAN.PIDS_PER_GROUP", "4", "SOLVER.IMS_PER_BATCH", "16", "MODEL.ACAN.CAMERA_BATCH", "12",
        "MODEL.ACAN.HIDDEN_DIM", "16", "MODEL.ACAN.DIAG_IMAGES_PER_CAMERA", "5", "SOLVER.MAX_EPOCH", "2",
        "TEST.EVAL_PERIOD", "1"]


def _run(scheme, out):
    from canu_plugin.engine import Trainer, setup_cfg
    name = "triplet" if scheme == "none" else scheme
    trainer = Trainer(setup_cfg(f"configs/synthetic/acan_{name}.yml", [*TINY, "OUTPUT_DIR", str(out)]))
    assert sum(isinstance(h, ACANDiagnosticsHook) for h in trainer._hooks) == 1  # registered by the Trainer
    trainer.iters_per_epoch, trainer.max_iter = 2, 4  # two steps per epoch keep the test fast
    trainer.train()
    return trainer, [json.loads(line) for line in open(out / "acan_diagnostics.jsonl")]


def test_hook_writes_diagnostics_after_each_evaluation(use_synth_root, tmp_path):
    from canu_plugin.engine.features import extract_features
    from fastreid.data.datasets import DATASET_REGISTRY
    trainer, records = _run("oce", tmp_path)
    assert [r["epoch"] for r in records] == [1, 2]
    last = records[-1]
    for epoch in (1, 2):
        assert (tmp_path / f"confusion_epoch{epoch:03d}.png").is_file()
    matrix = np.array(last["confusion"])
    assert matrix.shape == (6, 6) and np.allclose(matrix.sum(1), 1.0, atol=1e-3)
    assert last["disc_acc"] == pytest.approx(np.trace(matrix) / 6, abs=1e-3)
    data = DATASET_REGISTRY.get("SynthA")(root=use_synth_root)
    items = data.query + data.gallery
    feats = extract_features(trainer.model, items, trainer.cfg, normalize=False)
    assert last["d_inter_SynthA"] == pytest.approx(_d_by_hand(feats.numpy(), [it[2] for it in items], True), rel=1e-4)
    assert "acan/d_inter_SynthA" in trainer.storage.histories()


def test_hook_without_discriminator_logs_distances_only(use_synth_root, tmp_path):
    _, records = _run("none", tmp_path)
    assert len(records) == 2 and "confusion" not in records[-1]
    assert records[-1]["d_inter_SynthA"] > 0 and records[-1]["d_inter_train_sample"] > 0
    assert not list(tmp_path.glob("confusion_epoch*.png"))
