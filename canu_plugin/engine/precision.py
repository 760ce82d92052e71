"""Mixed precision for the plugin's training steps, as fast-reid's ``AMPTrainer`` does it.

``SOLVER.AMP.ENABLED``: the forward passes run under ``torch.autocast`` and the backward pass is
scaled by a ``GradScaler``: float16 on CUDA (fast-reid's AMP), bfloat16 on the CPU (the dtype the
CPU's autocast supports; bfloat16 has float32's exponent range, so the scaler is disabled there).
On the CPU, where bfloat16 autocast is slower than float32 (ResNet-50, 16 images of 64x32: 14.2 s
instead of 7.8 s a step on a 2-core Xeon) and torch 2.14's oneDNN has a bfloat16 convolution bug
(docs/compat.md), AMP is off unless ``SOLVER.AMP.CPU`` asks for it too (:func:`amp_enabled`); the
trainer logs which, once.
fast-reid's own ``AMPTrainer`` asserts CUDA; :class:`PrecisionTrainer` is the same step on any device
and the base of the adversarial step (one GradScaler per optimizer, the discriminators in float32).
"""
import contextlib
import time

import torch
from fastreid.engine.train_loop import SimpleTrainer
from fastreid.utils.params import ContiguousParams


def amp_dtype(device, enabled):
    """The autocast dtype for ``device`` (float16 on CUDA, bfloat16 elsewhere), or None when off."""
    if not enabled:
        return None
    return torch.float16 if torch.device(device).type == "cuda" else torch.bfloat16


def amp_enabled(cfg, device):
    """Whether the training steps on ``device`` autocast: ``SOLVER.AMP.ENABLED`` on CUDA; elsewhere
    only with ``SOLVER.AMP.CPU`` too (see the module docstring)."""
    if not cfg.SOLVER.AMP.ENABLED:
        return False
    return torch.device(device).type == "cuda" or bool(cfg.SOLVER.AMP.CPU)


def log_cpu_amp(cfg, device, log):
    """Say once (``log``: a logging function) what ``SOLVER.AMP.ENABLED`` does on a non-CUDA ``device``."""
    if not cfg.SOLVER.AMP.ENABLED or torch.device(device).type == "cuda":
        return
    if amp_enabled(cfg, device):
        log(f"SOLVER.AMP on {torch.device(device).type} (SOLVER.AMP.CPU True): forward passes in bfloat16")
    else:
        log(f"SOLVER.AMP.ENABLED is off on {torch.device(device).type}: bfloat16 autocast is slower there than "
            "float32; training in float32 (set SOLVER.AMP.CPU True to use it anyway)")


def make_scaler(device, dtype):
    """A GradScaler for ``dtype`` (enabled for float16 only) on ``device``'s type."""
    return torch.amp.GradScaler(torch.device(device).type, enabled=dtype == torch.float16)


class PrecisionTrainer(SimpleTrainer):
    """fast-reid's ``SimpleTrainer`` step with optional mixed precision (module docstring).

    Args:
        model, data_loader, optimizer, param_wrapper: as ``SimpleTrainer``.
        amp: ``SOLVER.AMP.ENABLED``.
    Attributes:
        grad_scaler: the model optimizer's GradScaler with AMP, else None (fast-reid's
            ``LRScheduler`` hook reads it, as it does ``AMPTrainer``'s).
    """

    def __init__(self, model, data_loader, optimizer, param_wrapper, amp=False):
        super().__init__(model, data_loader, optimizer, param_wrapper)
        device = next(model.parameters()).device
        self.device_type = device.type
        self.amp_dtype = amp_dtype(device, amp)
        self.grad_scaler = make_scaler(device, self.amp_dtype) if amp else None

    def autocast(self):
        """Context of the forward passes: autocast with AMP, nothing without."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.amp_dtype)

    def next_batch(self):
        """(batch, seconds spent waiting for it)."""
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        return data, time.perf_counter() - start

    def backward_and_step(self, loss_dict, data_time, optimizers=None):
        """Backward of the summed losses (scaled with AMP), metrics, then one step of every optimizer.

        Args:
            loss_dict: {name: scalar tensor}; data_time: seconds; optimizers: default [the model's].
        """
        optimizers = optimizers or [self.optimizer]
        scaler = self.grad_scaler
        losses = sum(loss_dict.values())
        for opt in optimizers:
            opt.zero_grad()
        (losses if scaler is None else scaler.scale(losses)).backward()
        self._write_metrics(loss_dict, data_time)
        for opt in optimizers:
            if scaler is None:
                opt.step()
            else:
                scaler.step(opt)  # skipped when the scaled gradients overflowed (float16)
        if scaler is not None:
            scaler.update()
        if isinstance(self.param_wrapper, ContiguousParams):
            self.param_wrapper.assert_buffer_is_valid()

    def run_step(self):
        assert self.model.training, "[PrecisionTrainer] model was changed to eval mode!"
        data, data_time = self.next_batch()
        with self.autocast():
            loss_dict = self.model(data)
        self.backward_and_step({k: v.float() for k, v in loss_dict.items()}, data_time)


__all__ = ["amp_dtype", "amp_enabled", "log_cpu_amp", "make_scaler", "PrecisionTrainer"]
