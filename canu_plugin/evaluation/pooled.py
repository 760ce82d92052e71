"""The backbone's pooled feature of every test image, whatever the model outputs.

The test features differ in kind between models (after a BNNeck for the pseudo-label models, before
any neck for ACAN's configs), so a camera measure on them compares unlike things. While a
:class:`PooledFeatureTap` is active (``with tap:``, installed by the trainer's ``test``), every
forward of a module named ``backbone`` (any depth: MMT's teachers, SSG) records the global average
of its output map, L2-normalised; the evaluator :meth:`~PooledFeatureTap.pop` s the mean of what one
batch's forwards recorded (both teachers, and the flipped images with TEST.FLIP): a (B, C) feature
of the same kind for every model (``d_inter_pooled``).
"""
import contextvars

import torch
import torch.nn.functional as F

_ACTIVE = contextvars.ContextVar("canu_pooled_feature_tap", default=None)


def active_tap():
    """The :class:`PooledFeatureTap` of the test running now, or None."""
    return _ACTIVE.get()


class PooledFeatureTap:
    """Records the L2-normalised, globally average-pooled output of the model's backbones.

    Args:
        model: the (possibly DDP-wrapped) model whose test forwards to watch.
    """

    def __init__(self, model):
        self.backbones = [m for name, m in model.named_modules() if name.split(".")[-1] == "backbone"]
        self._seen, self._handles, self._token = [], [], None

    def _record(self, module, inputs, output):
        if torch.is_tensor(output) and output.dim() == 4:
            self._seen.append(F.normalize(output.detach().float().mean((2, 3)), dim=1))

    def __enter__(self):
        self._handles = [b.register_forward_hook(self._record) for b in self.backbones]
        self._token = _ACTIVE.set(self)
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        _ACTIVE.reset(self._token)
        self._seen = []

    def pop(self):
        """(B, C) mean of the pooled features recorded since the last pop (None if none)."""
        seen, self._seen = self._seen, []
        if not seen or any(s.shape != seen[0].shape for s in seen):
            return None
        return torch.stack(seen).mean(0)


__all__ = ["PooledFeatureTap", "active_tap"]
