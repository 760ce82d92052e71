"""Per-epoch diagnostics hooks: epoch times, the discriminators' epoch means, ACAN's
camera-alignment diagnostics after each evaluation (d_inter-camera and the confusion matrix are pure
functions of :mod:`canu_plugin.evaluation.camera_alignment`), and the writer that writes them all.

Every per-epoch value is a scalar in fast-reid's EventStorage, put before the writers run
(metrics.json and the TensorBoard event file hold them); only what a scalar cannot hold (ACAN's
confusion matrices) is also written to a JSON-lines file."""
import logging
import os
import time

import numpy as np
import torch
from fastreid.engine.hooks import EvalHook, PeriodicCheckpointer, PeriodicWriter
from fastreid.engine.train_loop import HookBase
from fastreid.utils import comm

from canu_plugin.data.datasets import test_items
from canu_plugin.data.root import datasets_root
from canu_plugin.distributed import sync_buffers
from canu_plugin.engine.features import extract_features
from canu_plugin.evaluation.camera_alignment import balanced_sample, camera_confusion, d_inter_camera, plot_confusion
from canu_plugin.jsonl import append_jsonl

logger = logging.getLogger(__name__)


class EpochTimeHook(HookBase):
    """After every epoch, puts ``epoch`` (epochs finished) and ``time/epoch_train_s`` (the epoch's
    training-loop seconds: its steps, data loading included; no clustering, no evaluation) in the
    storage, at the epoch's last iteration, for fast-reid's writers (metrics.json, TensorBoard)."""

    def __init__(self):
        self._first = self._last = None

    def before_epoch(self):
        self._first = self._last = None

    def before_step(self):
        if self._first is None:
            self._first = time.perf_counter()

    def after_step(self):
        self._last = time.perf_counter()

    def after_epoch(self):
        storage = self.trainer.storage
        storage.put_scalar("epoch", self.trainer.epoch + 1, smoothing_hint=False)
        if self._first is not None:
            storage.put_scalar("time/epoch_train_s", self._last - self._first, smoothing_hint=False)


class DiscriminatorEpochHook(HookBase):
    """After every epoch, the epoch's mean discriminator camera accuracy and loss (the
    ``cam_disc_*`` values :class:`AdversarialTrainer` puts in the storage at every step) go to the
    storage as ``adv/epoch_disc_acc`` and ``adv/epoch_disc_loss``."""

    def after_epoch(self):
        if not comm.is_main_process():  # the per-step values are gathered on rank 0
            return
        storage, first = self.trainer.storage, self.trainer.iter - self.trainer.iters_per_epoch
        for key in ("cam_disc_acc", "cam_disc_loss"):
            if key in storage.histories():
                values = [v for v, it in storage.history(key).values() if it >= first]
                if values:
                    storage.put_scalar(f"adv/epoch_{key[4:]}", float(np.mean(values)), smoothing_hint=False)


class BufferSyncHook(HookBase):
    """At every epoch's start and end (before clustering, evaluation and checkpoint), every process
    takes rank 0's buffers (:func:`canu_plugin.distributed.sync_buffers`): features are extracted with
    the statistics the checkpoint keeps, and a resumed run continues from the state every rank had."""

    def _sync(self):
        sync_buffers(self.trainer.model, *getattr(self.trainer, "discriminators", []))

    def before_epoch(self):
        self._sync()

    def after_epoch(self):
        self._sync()


class FinalEvalHook(EvalHook):
    """fast-reid's ``EvalHook`` where ``TEST.EVAL_PERIOD`` 0 means "after the last epoch only"
    (fast-reid divides by the period there)."""

    def after_train(self):
        if self._period > 0:
            return super().after_train()
        if self.trainer.epoch + 1 >= self.trainer.max_epoch:
            self._do_eval()
        del self._func


class FinalWriter(PeriodicWriter):
    """fast-reid's ``PeriodicWriter`` that leaves an epoch's last iteration to ``after_epoch`` (a
    write there would mark that iteration written before the epoch's values are put) and writes once
    more when training ends (a final evaluation, ACAN's last diagnostics)."""

    def after_step(self):
        if (self.trainer.iter + 1) % self.trainer.iters_per_epoch:
            super().after_step()

    def after_train(self):
        for writer in self._writers:
            writer.write()
        super().after_train()


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
        for name in self.cfg.DATASETS.TESTS:
            query, gallery = test_items(name, datasets_root())
            yield name, query + gallery

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


def order_epoch_end(hooks, extra):
    """fast-reid's hook list with its EvalHook as a :class:`FinalEvalHook` followed by ``extra``,
    and the writers (a :class:`FinalWriter`) before the checkpointer: every epoch's values are written
    before the checkpoint that ends the epoch, so a run killed in between redoes the epoch and writes
    them again."""
    writers = [FinalWriter(h._writers, h._period) for h in hooks if isinstance(h, PeriodicWriter)]
    out = []
    for h in hooks:
        if isinstance(h, PeriodicWriter):
            continue
        if isinstance(h, PeriodicCheckpointer):
            out += writers
            writers = []
        if isinstance(h, EvalHook):
            out += [FinalEvalHook(h._period, h._func), *extra]
            continue
        out.append(h)
    return out + writers


__all__ = ["order_epoch_end", "EpochTimeHook", "DiscriminatorEpochHook", "BufferSyncHook", "FinalEvalHook", "FinalWriter",
           "ACANDiagnosticsHook"]
