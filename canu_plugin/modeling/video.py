"""Temporal pooling inside any fast-reid Baseline-style model (Baseline, PseudoBaseline, ACAN).

:func:`install_temporal_pooling` adds a :class:`TemporalPooling` submodule (``model.temporal_pool``)
and forward hooks; nothing of the model is replaced, so its state dict keeps fast-reid's keys
(image checkpoints load into it and back), plus ``temporal_pool.*`` for attention pooling:

- backbone pre-hook: a clip batch (B, T, 3, H, W) runs as B*T frames (any fast-reid backbone);
- head pool-layer hook: the per-frame pooled features (B*T, C, 1, 1) become one tracklet feature
  (B, C, 1, 1), their temporal mean (``avg``) or a softmax-weighted mean with one learned score
  per frame (``attention``: Linear(C, 1) on the frame's pooled feature, a simplified form of the
  temporal attention in Gao & Nevatia's "Revisiting temporal modeling for video-based person
  re-ID", which scores frames from their feature maps); the head (BNNeck, classifier) and every loss
  then see B tracklets, exactly as B images;
- a batch of single frames (B, 3, H, W) passes unchanged: images, or inference on tracklet frames.

Inference on tracklets (:mod:`canu_plugin.evaluation.video`) embeds frames one by one and pools the
eval embeddings with the same weights. The eval embedding of fast-reid's heads is affine in the
pooled feature (1x1 conv / BatchNorm in eval mode), so this equals the model's forward on the
whole clip, with memory independent of the tracklet length. For attention, a frame batch that
carries ``tracklets`` (:class:`canu_plugin.data.video.clips.TrackletFrames`) gets its frame
scores appended as a last column, (B, D + 1), which the tracklet pooler splits off.
"""
import logging

import torch
import torch.nn.functional as F
from torch import nn

from canu_plugin.errors import CanuError

logger = logging.getLogger(__name__)
POOLINGS = ("avg", "attention")
TRACKLET_KEY = "tracklets"  # = canu_plugin.data.video.clips.TRACKLET_KEY (modeling does not import data)
AFFINE = (nn.Conv2d, nn.BatchNorm2d, nn.BatchNorm1d, nn.Linear, nn.Identity)


class TemporalPooling(nn.Module):
    """Per-frame features -> one tracklet feature; see the module docstring.

    Args:
        method: "avg" or "attention"; feat_dim: C, the width of the per-frame pooled feature.
    """

    def __init__(self, method="avg", feat_dim=2048):
        super().__init__()
        if method not in POOLINGS:
            raise CanuError(f"VIDEO.POOLING {method!r} is unknown: use one of {POOLINGS}")
        self.method = method
        self.attention = nn.Linear(int(feat_dim), 1) if method == "attention" else None
        self.seq_len = None        # T of the clip batch being processed; None = single frames
        self._want_scores = False  # this forward embeds tracklet frames for the pooler (attention)
        self._scores = None

    def frame_scores(self, frames):
        """Attention logits of frames (..., C) -> (...); zeros for ``avg``."""
        if self.attention is None:
            return frames.new_zeros(frames.shape[:-1])
        return self.attention(frames).squeeze(-1)

    def forward(self, frames):
        """(B, T, C) per-frame features -> (B, C) tracklet features."""
        if self.attention is None:
            return frames.mean(1)
        weights = F.softmax(self.frame_scores(frames), dim=1)
        return (weights.unsqueeze(-1) * frames).sum(1)

    # ---- hooks ---------------------------------------------------------------------------------
    def _backbone_pre(self, module, args):
        x = args[0]
        if x.dim() == 5:
            self.seq_len = x.size(1)
            return (x.flatten(0, 1),) + tuple(args[1:])
        self.seq_len = None
        return None

    def _pool_out(self, module, args, out):
        if self.seq_len is None:
            if self._want_scores:
                self._scores = self.frame_scores(out.flatten(1))
            return None
        if out.size(0) % self.seq_len:
            raise CanuError(f"the head pooled {out.size(0)} rows for clips of {self.seq_len} frames: temporal pooling "
                            "needs the head to see every frame of the clip batch (B x T rows)")
        B = out.size(0) // self.seq_len
        pooled = self(out.reshape(B, self.seq_len, -1))
        return pooled.reshape(B, -1, *out.shape[2:])

    def _model_pre(self, module, args):
        batch = args[0] if args else None
        self._want_scores = (self.attention is not None and not module.training and isinstance(batch, dict)
                             and TRACKLET_KEY in batch)
        self._scores = None

    def _model_out(self, module, args, out):
        if not self._want_scores:
            return None
        self._want_scores = False
        if not torch.is_tensor(out) or self._scores is None:
            raise CanuError("attention pooling could not score the frames: the model's eval output must be one "
                            "(B, D) tensor computed through its head's pool layer")
        return torch.cat([out, self._scores.reshape(-1, 1).to(out.dtype)], dim=1)


def install_temporal_pooling(model, method="avg", feat_dim=2048):
    """Make a fast-reid Baseline-style model take (B, T, 3, H, W) clips (module docstring).

    Args:
        model: meta-architecture with ``backbone`` and ``heads.pool_layer`` (Baseline, PseudoBaseline,
            ACAN); modified in place. method: "avg" or "attention"; feat_dim: the backbone's C.
    Returns:
        the model. Raises CanuError for other architectures or a second installation.
    """
    heads = getattr(model, "heads", None)
    if not hasattr(model, "backbone") or not hasattr(heads, "pool_layer"):
        raise CanuError(f"{type(model).__name__} cannot train on tracklets: temporal pooling needs a fast-reid "
                        "Baseline-style model (a backbone and one head with a pool layer: Baseline, PseudoBaseline, "
                        "ACAN); train it on an image dataset")
    if hasattr(model, "temporal_pool"):
        raise CanuError("temporal pooling is already installed in this model")
    model.temporal_pool = TemporalPooling(method, feat_dim).to(next(model.parameters()).device)
    pool = model.temporal_pool
    model.backbone.register_forward_pre_hook(pool._backbone_pre)
    heads.pool_layer.register_forward_hook(pool._pool_out)
    model.register_forward_pre_hook(pool._model_pre)
    model.register_forward_hook(pool._model_out)
    if not all(isinstance(m, AFFINE) for m in getattr(heads, "bottleneck", nn.Sequential())):
        logger.warning("the head's neck is not affine: tracklet features at inference (pooled frame embeddings) "
                       "differ from the training-time pooled features")
    return model


def frame_outputs(outputs, method):
    """Split a frame batch's eval outputs into (embeddings (B, D), scores (B,)): for ``attention``
    the last column holds the frame scores (see the module docstring); for ``avg`` scores are 0."""
    if method == "attention":
        return outputs[:, :-1], outputs[:, -1]
    return outputs, outputs.new_zeros(outputs.size(0))


__all__ = ["POOLINGS", "TemporalPooling", "install_temporal_pooling", "frame_outputs"]
