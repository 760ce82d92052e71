"""Heads whose identity classifier can change size between epochs (pseudo-label training)."""
import torch.nn.functional as F
from fastreid.modeling.heads import REID_HEADS_REGISTRY, EmbeddingHead
from torch import nn


@REID_HEADS_REGISTRY.register()
class PseudoEmbeddingHead(EmbeddingHead):
    """fast-reid's ``EmbeddingHead`` plus :meth:`reset_classifier`.

    The number of pseudo-identities changes at every re-clustering; the classifier is then
    re-created with one row per cluster, initialised from the normalised cluster centroids.
    """

    def forward(self, features, targets=None):
        """fast-reid's head; in training its dict also holds ``"embedding"`` (B, D): the BNNeck's
        output (the eval-mode embedding's training-mode counterpart), whatever ``NECK_FEAT`` says."""
        if not self.training:
            return super().forward(features, targets)
        captured = []
        handle = self.bottleneck.register_forward_hook(lambda module, inputs, output: captured.append(output))
        try:
            outputs = super().forward(features, targets)
        finally:
            handle.remove()
        outputs["embedding"] = captured[0][..., 0, 0]
        return outputs

    def reset_classifier(self, centroids):
        """Replace the classifier by one row per cluster, set to the normalised centroids.

        Args:
            centroids: (K, D) cluster centroids of the embedding this head outputs in eval mode.
        Returns:
            (old, new): the replaced and the new ``nn.Parameter`` (the optimizer must swap them).
        """
        if centroids.dim() != 2 or centroids.size(1) != self.weight.size(1):
            raise ValueError(f"centroids must be (K, {self.weight.size(1)}), got {tuple(centroids.shape)}")
        old = self.weight
        new = nn.Parameter(F.normalize(centroids.detach().float(), dim=1).to(old.device))
        self.weight = new
        self.cls_layer = type(self.cls_layer)(new.size(0), self.cls_layer.s, self.cls_layer.m)
        return old, new

    @property
    def num_classes(self):
        """Current number of classifier rows (pseudo-identities)."""
        return self.weight.size(0)


def freeze_triplet_only(heads):
    """Freeze what a triplet-only method (ACAN, SSG) never trains in fast-reid heads: the ID
    classifier and, when the losses use the features before the BNNeck, the neck (it then only
    serves evaluation; its running statistics still update).

    Args:
        heads: iterable of fast-reid ``EmbeddingHead`` modules.
    """
    for h in heads:
        frozen = [h.weight] if hasattr(h, "weight") else []
        if getattr(h, "neck_feat", "after") == "before":
            frozen += list(getattr(h, "bottleneck", nn.Sequential()).parameters())
        for p in frozen:
            p.requires_grad_(False)


__all__ = ["PseudoEmbeddingHead", "freeze_triplet_only"]
