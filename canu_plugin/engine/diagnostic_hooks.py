"""Per-epoch diagnostics hooks: the run log (epoch times and evaluation results), the
discriminators' epoch means, and ACAN's camera-alignment diagnostics after each evaluation
(d_inter-camera and the confusion matrix are pure functions of :mod:`canu_plugin.evaluation.camera_alignment`)."""
import logging
import os
import time

import numpy as np
import torch
from fastreid.engine.train_loop import HookBase
from fastreid.utils import comm

from canu_plugin.data.root import datasets_root
from canu_plugin.engine.features import extract_features
from canu_plugin.evaluation.camera_alignment import balanced_sample, camera_confusion, d_inter_camera, plot_confusion
from canu_plugin.jsonl import append_jsonl

logger = logging.getLogger(__name__)


class RunLogHook(HookBase):
    """One JSON line per epoch in ``OUTPUT_DIR/<RUN_LOG>``: the epoch's training-loop time
    (``train_s``: its steps, data loading included; no clustering, no evaluation) and, when
    fast-reid's EvalHook evaluated after it, the results (``{dataset: {metric: value}}``).
    Placed after the EvalHook, so it sees that epoch's results."""

    def __init__(self, path):
        self.path = path
        self._first = self._last = None
        self._seen = None  # the last results object written

    def before_epoch(self):
        self._first = self._last = None

    def before_step(self):
        if self._first is None:
            self._first = time.perf_counter()

    def after_step(self):
        self._last = time.perf_counter()

    def after_epoch(self):
        seconds = None if self._first is None else self._last - self._first
        self._write(self.trainer.epoch + 1, seconds)

    def after_train(self):  # fast-reid evaluates the last epoch here when EVAL_PERIOD does not divide it
        self._write(self.trainer.epoch + 1, None, only_new_results=True)

    def _write(self, epoch, seconds, only_new_results=False):
        if not comm.is_main_process() or not self.path:
            return
        results = getattr(self.trainer, "_last_eval_results", None)
        if only_new_results and (results is None or results is self._seen):
            return
        record = {"epoch": epoch} if seconds is None else {"epoch": epoch, "train_s": round(seconds, 3)}
        if results is not None and results is not self._seen:
            self._seen = results
            if "Rank-1" in results:  # one test set: fast-reid returns its metrics directly
                results = {self.trainer.cfg.DATASETS.TESTS[0]: results}
            record["results"] = {ds: {k: float(v) for k, v in m.items() if isinstance(v, (int, float, np.number))}
                                 for ds, m in results.items()}
        append_jsonl(self.path, record)


class DiscriminatorLogHook(HookBase):
    """After every epoch, the epoch's mean discriminator camera accuracy and loss (the
    ``cam_disc_*`` values :class:`AdversarialTrainer` puts in the storage at every step) go to the
    storage (``adv/epoch_disc_acc``, ``adv/epoch_disc_loss``) and to ``OUTPUT_DIR/<log_file>``."""

    def __init__(self, log_path):
        self.log_path = log_path

    def after_epoch(self):
        if not comm.is_main_process():
            return
        storage, first = self.trainer.storage, self.trainer.iter - self.trainer.iters_per_epoch
        record = {"epoch": self.trainer.epoch}
        for key in ("cam_disc_acc", "cam_disc_loss"):
            if key in storage.histories():
                values = [v for v, it in storage.history(key).values() if it >= first]
                if values:
                    record[key] = float(np.mean(values))
                    storage.put_scalar(f"adv/epoch_{key[4:]}", record[key], smoothing_hint=False)
        if self.log_path and len(record) > 1:
            append_jsonl(self.log_path, record)


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
        for name in self.cfg.DATASETS.TESTS:
            data = DATASET_REGISTRY.get(name)(root=datasets_root())
            yield name, data.query + data.gallery

    def run(self, epoch):
        """Compute, log and save the diagnostics of the model after ``epoch`` epochs; returns the
        record (dict) on rank 0, None elsewhere."""
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


__all__ = ["RunLogHook", "DiscriminatorLogHook", "ACANDiagnosticsHook"]
