"""``SSG``: Self-Similarity Grouping (Fu et al., ICCV 2019), the base of CANU-SSG.

The backbone's last feature map (B, C, H, W) gives three embeddings, each with its own pooling
and BNNeck (a fast-reid head of ``MODEL.HEADS``): the full body (all H rows), the upper part (the
top H // 2 rows) and the lower part (the bottom H // 2 rows; for an odd H the middle row belongs
to neither part).

- Clustering: the model's eval output is the concatenation of the three L2-normalised embeddings
  (B, 3D), which is also the test feature (SSG tests on the concatenated feature).
  :meth:`cluster_views` splits it back; the label generator clusters each view on its own.
  View 0 (full body) gives the loader's labels and the centroids; the part labels come back in every
  batch as ``"view_targets"`` (the pseudo-label loader carries them with the images).
- Training (triplet losses only, as SSG; no ID classifier, so the heads' classifier weights are
  frozen and never re-sized): ``loss_triplet_full`` on the loader's targets,
  ``loss_triplet_upper`` / ``loss_triplet_lower`` on each part's own labels; samples that are
  outliers (-1) in a part's clustering are left out of that part's triplet (SSG's code drops a
  sample that is an outlier in any view from training altogether). The triplet is fast-reid's
  (``MODEL.LOSSES.TRI``: margin, hard mining, feature normalisation, scale) on the head's
  training features (``MODEL.HEADS.NECK_FEAT``).
- Deviation: the P x K batches are sampled on the full-body labels only (one loader; the part
  labels of a batch are whatever its samples carry). SSG's public code samples the same way
  (``RandomIdentitySampler`` on the first label); the paper describes one loader per part.
- CANU-SSG (``return_adv_inputs``): three discriminators, on the full, upper and lower features,
  each conditioned on the centroid of the sample's *full-body* cluster (CANU-ReID, Eq. 10).
"""
import torch
import torch.nn.functional as F
from fastreid.config import configurable
from fastreid.modeling.heads import build_heads
from fastreid.modeling.losses import triplet_loss
from fastreid.modeling.meta_arch import META_ARCH_REGISTRY
from torch import nn

from canu_plugin.data.keys import VIEW_TARGETS
from canu_plugin.errors import CanuError
from canu_plugin.modeling.heads import freeze_triplet_only
from canu_plugin.modeling.meta_arch.pseudo_baseline import PseudoBaseline

VIEWS = ("full", "upper", "lower")
PARTS = VIEWS[1:]


def split_rows(feature_map):
    """The full map and its top and bottom halves.

    Args:
        feature_map: (B, C, H, W), H >= 2.
    Returns:
        [(B, C, H, W), (B, C, H // 2, W), (B, C, H // 2, W)]: full, upper, lower.
    """
    h = feature_map.size(2)
    if h < 2:
        raise CanuError(f"SSG splits the feature map into upper and lower halves but it has {h} row: use a "
                        "larger INPUT.SIZE_TRAIN / SIZE_TEST or MODEL.BACKBONE.LAST_STRIDE 1")
    return [feature_map, feature_map[:, :, : h // 2], feature_map[:, :, h - h // 2:]]


def _neck(head, feature_map):
    """A fast-reid head's pooling + BNNeck, without its classifier.

    Returns:
        (features (B, C') the losses use, as ``head.neck_feat`` says; embedding (B, D) of eval mode).
    """
    pooled = head.pool_layer(feature_map)
    embedding = head.bottleneck(pooled)[..., 0, 0]
    return (pooled[..., 0, 0] if head.neck_feat == "before" else embedding), embedding


@META_ARCH_REGISTRY.register()
class SSG(PseudoBaseline):
    """PseudoBaseline with full / upper / lower embeddings and per-view triplet losses."""

    @configurable
    def __init__(self, *, part_heads, **kwargs):
        super().__init__(**kwargs)
        self.part_heads = part_heads  # ModuleDict upper / lower, built like ``heads``
        freeze_triplet_only([self.heads, *part_heads.values()])  # no ID classifier

    @classmethod
    def from_config(cls, cfg):
        names = tuple(cfg.MODEL.LOSSES.NAME)
        if names != ("TripletLoss",):
            raise CanuError(f"SSG trains with triplet losses only (no ID classifier), got MODEL.LOSSES.NAME {names}: "
                            "set MODEL.LOSSES.NAME ('TripletLoss',)")
        args = super().from_config(cfg)
        args["part_heads"] = nn.ModuleDict({p: build_heads(cfg) for p in PARTS})
        return args

    # ---- embeddings ---------------------------------------------------------------------------
    def part_features(self, feature_map):
        """The three embeddings of a backbone feature map.

        Args:
            feature_map: (B, C, H, W).
        Returns:
            [(features (B, C'), embedding (B, D))] for full, upper, lower (see :func:`_neck`).
        """
        heads = [self.heads, self.part_heads["upper"], self.part_heads["lower"]]
        return [_neck(h, m) for h, m in zip(heads, split_rows(feature_map))]

    def forward(self, batched_inputs, return_adv_inputs=False):
        """Eval: (B, 3D) concatenated L2-normalised full / upper / lower embeddings.
        Training: ``{loss_triplet_full, loss_triplet_upper, loss_triplet_lower}``; with
        ``return_adv_inputs`` also ``[(f_full, c), (f_upper, c), (f_lower, c)]``, c (B, D) being
        the centroids of the samples' full-body clusters."""
        parts = self.part_features(self.backbone(self.preprocess_image(batched_inputs)))
        if not self.training:
            return torch.cat([F.normalize(e, dim=1) for _, e in parts], 1)
        targets = batched_inputs["targets"].to(self.device)
        labels = [targets, *self.part_labels(batched_inputs).unbind(1)]
        feats = [f for f, _ in parts]
        loss_dict = {f"loss_triplet_{v}": self.masked_triplet(f, lab) for v, f, lab in zip(VIEWS, feats, labels)}
        if not return_adv_inputs:
            return loss_dict
        cond = self.centroids_of(targets)
        return loss_dict, [(f, cond) for f in feats]

    def masked_triplet(self, features, labels):
        """fast-reid's triplet (``MODEL.LOSSES.TRI``) over the samples with a label.

        Args:
            features: (B, C'); labels: (B,) cluster labels, -1 = outlier (left out).
        Returns:
            scalar tensor (0, still attached to ``features``, with fewer than 2 labelled samples).
        """
        keep = labels >= 0
        if int(keep.sum()) < 2:
            return features.sum() * 0.0
        tri = self.loss_kwargs["tri"]
        loss = triplet_loss(features[keep], labels[keep], tri["margin"], tri["norm_feat"], tri["hard_mining"])
        return loss * tri["scale"]

    # ---- the pseudo-label contract (modeling/contract.py) ------------------------------------
    def cluster_views(self, features):
        """Split the eval output into its three views.

        Args:
            features: (N, 3D) raw eval-mode features.
        Returns:
            [(N, D)] x 3, L2-normalised: full (drives the loader and centroids), upper, lower.
        """
        if features.dim() != 2 or features.size(1) % len(VIEWS):
            raise ValueError(f"SSG features must be (N, 3D), got {tuple(features.shape)}")
        return [F.normalize(v, dim=1) for v in features.chunk(len(VIEWS), dim=1)]

    def part_labels(self, batched_inputs):
        """Upper / lower labels of a batch (``"view_targets"``, written by the pseudo-label loader).

        Returns:
            (B, 2) int64 on the model's device, -1 = outlier of that part's clustering.
        """
        labels = batched_inputs.get(VIEW_TARGETS) if isinstance(batched_inputs, dict) else None
        if labels is None or labels.dim() != 2 or labels.size(1) != len(PARTS):
            raise CanuError("an SSG batch needs its (B, 2) part labels under 'view_targets': train with "
                            "PSEUDO.ENABLED True (the pseudo-label loader adds them)")
        return labels.to(self.device)

    def install_clusters(self, pseudo, classifier_weights=None):
        """Keep the full-body centroids (K, D) for conditioning; there is no classifier to re-size.

        Returns:
            [] (no parameter for the optimizer to swap).
        """
        if pseudo.view_labels is None or pseudo.view_labels.shape[1] != len(PARTS):
            raise CanuError("SSG needs the labels of its upper and lower views: the label generator clusters "
                            "every view of cluster_views")
        self.set_centroids(pseudo.centroids)
        return []

    def classifier_weights(self):
        """No ID classifier: []."""
        return []

    @property
    def adversarial_dims(self):
        """Three ``(feature width, full-body centroid width)`` entries: full, upper, lower."""
        return super().adversarial_dims * len(VIEWS)
