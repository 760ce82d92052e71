"""ACAN's camera-alignment diagnostics: inter-camera distance (Table VII) and the discriminator's
camera confusion matrix (Fig. 8), plus :class:`ACANDiagnosticsHook` that writes them at evaluation.

``d_inter-camera = (1/C) sum_c ||mean_c - mean||_2`` with ``mean_c`` the mean feature of camera c
and ``mean`` the mean of all samples. The paper does not say whether the features are
L2-normalised first. Its values (x100: 2.2 to 10.9, i.e. d of 0.02 to 0.11) only make sense for
unit-length features (raw pooled ResNet-50 features have norms in the tens), so normalising is
the default (``normalize=True``, ``MODEL.ACAN.DIAG_NORMALIZE``); ``normalize=False`` measures the
raw features.
"""
import logging
import os

import numpy as np
import torch
import torch.nn.functional as F
from fastreid.engine.train_loop import HookBase
from fastreid.utils import comm

from canu_plugin.jsonl import append_jsonl

logger = logging.getLogger(__name__)


def _camera_index(camids):
    """(N,) int64 camera indices in [0, C) of any camera labels, and C."""
    uniq, inv = np.unique(np.asarray(camids), return_inverse=True)
    return inv.reshape(-1), len(uniq)


def d_inter_camera(features, camids, normalize=True):
    """Mean distance of the camera means to the overall mean (ACAN Table VII; lower = aligned).

    Args:
        features: (N, D) array or tensor.
        camids: (N,) camera labels (any values; C = number of distinct ones, C >= 1).
        normalize: L2-normalise every feature first (default, see the module docstring).
    Returns:
        float d >= 0.
    """
    feats = torch.as_tensor(np.asarray(features) if not torch.is_tensor(features) else features).double()
    if feats.dim() != 2 or feats.size(0) == 0:
        raise ValueError(f"features must be a non-empty (N, D) array, got shape {tuple(feats.shape)}")
    cams, num = _camera_index(camids.cpu().numpy() if torch.is_tensor(camids) else camids)
    if len(cams) != feats.size(0):
        raise ValueError(f"{feats.size(0)} features but {len(cams)} camera ids")
    if normalize:
        feats = F.normalize(feats, dim=1)
    cams = torch.from_numpy(cams)
    means = torch.zeros(num, feats.size(1), dtype=feats.dtype).index_add_(0, cams, feats)
    means /= torch.bincount(cams, minlength=num).unsqueeze(1).to(feats.dtype)
    return float((means - feats.mean(0)).norm(dim=1).mean())


def camera_confusion(logits_or_preds, camids, num_cameras, soft=False):
    """Row-normalised camera confusion matrix of a discriminator.

    Args:
        logits_or_preds: (N, C) logits, or (N,) predicted camera indices.
        camids: (N,) true camera indices in [0, C).
        num_cameras: C.
        soft: with logits, average the softmax probabilities instead of counting argmaxes.
    Returns:
        (C, C) float64 numpy array: row = true camera, column = predicted camera; each row sums
        to 1 (a camera with no sample gives a row of zeros).
    """
    x = torch.as_tensor(logits_or_preds).detach().cpu()
    true = torch.as_tensor(camids).detach().cpu().long().reshape(-1)
    if x.dim() == 2 and x.size(1) != num_cameras:
        raise ValueError(f"logits have {x.size(1)} columns for {num_cameras} cameras")
    if x.dim() not in (1, 2) or x.size(0) != len(true):
        raise ValueError(f"expected (N,) predictions or (N, C) logits for N={len(true)} cameras, got {tuple(x.shape)}")
    if len(true) and (true.min() < 0 or true.max() >= num_cameras):
        raise ValueError(f"camera ids must lie in [0, {num_cameras})")
    if soft and x.dim() != 2:
        raise ValueError("soft=True needs (N, C) logits")
    if x.dim() == 1 and len(x) and (x.min() < 0 or x.max() >= num_cameras):
        raise ValueError(f"predicted cameras must lie in [0, {num_cameras})")
    probs = x.double().softmax(1) if soft else F.one_hot((x.argmax(1) if x.dim() == 2 else x).long(),
                                                         num_cameras).double()
    matrix = torch.zeros(num_cameras, num_cameras, dtype=torch.float64).index_add_(0, true, probs)
    return (matrix / matrix.sum(1, keepdim=True).clamp_min(1e-12)).numpy()


def plot_confusion(matrix, path, title=""):
    """Save a (C, C) confusion matrix as a PNG heat map (matplotlib, Agg backend). Returns ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    matrix = np.asarray(matrix, dtype=float)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"matrix must be square (C, C), got shape {matrix.shape}")
    num = matrix.shape[0]
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * num, 0.8 + 0.5 * num))
    im = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis")
    for i in range(num):
        for j in range(num):
            ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="black" if matrix[i, j] > 0.5 else "white")
    ax.set_xticks(range(num), [str(c + 1) for c in range(num)])
    ax.set_yticks(range(num), [str(c + 1) for c in range(num)])
    ax.set_xlabel("predicted camera")
    ax.set_ylabel("true camera")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def balanced_sample(camids, per_camera, seed=0):
    """Sorted indices of up to ``per_camera`` samples of every camera (fixed by ``seed``).

    Args:
        camids: (N,) camera labels. Returns: (M,) int64 indices.
    """
    cams, num = _camera_index(camids)
    rng = np.random.default_rng(seed)
    picks = [rng.permutation(np.flatnonzero(cams == c))[:per_camera] for c in range(num)]
    return np.sort(np.concatenate(picks))


class ACANDiagnosticsHook(HookBase):
    """After every evaluation (fast-reid's ``EvalHook`` schedule: every ``TEST.EVAL_PERIOD`` epochs
    and after the last one), computes d_inter-camera of the eval-mode test features of every
    ``DATASETS.TESTS`` dataset (and of a camera-balanced training sample), and, when the trainer
    has discriminators, the first discriminator's confusion matrix on that training sample
    (eval-mode features; argmax and mean-probability matrices, ``disc_acc`` = mean of the argmax
diagonal, i.e. camera-balanced accuracy). Writes ``OUTPUT_DIR/confusion_epochXXX.png``
    and one JSON line in ``OUTPUT_DIR/<MODEL.ACAN.DIAG_FILE>``. All ranks extract; rank 0 writes.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        self.period = cfg.TEST.EVAL_PERIOD
        self._finished = -1  # last epoch whose after_epoch ran

    def after_epoch(self):
        self._finished = next_epoch = self.trainer.epoch + 1
        if self.period > 0 and next_epoch % self.period == 0 and next_epoch < self.trainer.max_epoch:
            self.run(next_epoch)

    def after_train(self):
        if self._finished == self.trainer.max_epoch:  # the last epoch completed (not a failed run)
            self.run(self._finished)

    def _test_items(self):
        from fastreid.data.datasets import DATASET_REGISTRY
        from canu_plugin.engine.trainer import datasets_root
        for name in self.cfg.DATASETS.TESTS:
            data = DATASET_REGISTRY.get(name)(root=datasets_root())
            yield name, data.query + data.gallery

    def run(self, epoch):
        """Compute, log and save the diagnostics of the model after ``epoch`` epochs; returns the
        record (dict) on rank 0, None elsewhere."""
        from canu_plugin.engine.features import extract_features
        norm, model = self.cfg.MODEL.ACAN.DIAG_NORMALIZE, self.trainer.model
        record = {"epoch": epoch, "scheme": self.cfg.MODEL.ACAN.SCHEME}
        for name, items in self._test_items():
            feats = extract_features(model, items, self.cfg, normalize=False)
            if comm.is_main_process():
                record[f"d_inter_{name}"] = d_inter_camera(feats, [it[2] for it in items], normalize=norm)
        train = self.trainer.data_loader.dataset.img_items
        idx = balanced_sample([it[2] for it in train], self.cfg.MODEL.ACAN.DIAG_IMAGES_PER_CAMERA)
        sample = [train[i] for i in idx]
        feats = extract_features(model, sample, self.cfg, normalize=False)
        if not comm.is_main_process():
            return None
        camids = torch.tensor([it[2] for it in sample])
        record["d_inter_train_sample"] = d_inter_camera(feats, camids, normalize=norm)
        discs = getattr(self.trainer, "discriminators", None)
        if discs is not None and len(discs):
            record.update(self._confusion(discs[0], feats, camids, epoch))
        self._write(record)
        return record

    @torch.no_grad()
    def _confusion(self, disc, feats, camids, epoch):
        was_training = disc.training
        disc.eval()
        try:
            logits = disc(feats.to(next(disc.parameters()).device), None).float().cpu()
        finally:
            disc.train(was_training)
        num = logits.size(1)
        hard, soft = camera_confusion(logits, camids, num), camera_confusion(logits, camids, num, soft=True)
        path = os.path.join(self.cfg.OUTPUT_DIR, f"confusion_epoch{epoch:03d}.png")
        plot_confusion(hard, path, f"{self.cfg.MODEL.ACAN.SCHEME}: camera discriminator, epoch {epoch}")
        return {"disc_acc": float(np.trace(hard) / num), "confusion": np.round(hard, 4).tolist(),
                "confusion_prob": np.round(soft, 4).tolist(), "confusion_png": path}

    def _write(self, record):
        scalars = {k: v for k, v in record.items() if k.startswith(("d_inter", "disc_acc"))}
        logger.info("ACAN diagnostics: " + ", ".join(f"{k}={v:.4f}" for k, v in scalars.items()))
        self.trainer.storage.put_scalars(**{f"acan/{k}": v for k, v in scalars.items()}, smoothing_hint=False)
        if self.cfg.MODEL.ACAN.DIAG_FILE:
            append_jsonl(os.path.join(self.cfg.OUTPUT_DIR, self.cfg.MODEL.ACAN.DIAG_FILE), record)
