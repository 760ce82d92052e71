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
  ``loss_triplet_upper`` / ``loss_triplet_lower`` with each part's own labels as SSG's code
  forms them: the positives of an anchor are the other samples of its P x K block (the same
  full-body target), its negatives the samples of another *part* cluster. A sample that is an
  outlier (-1) in any view never reaches a batch (``PSEUDO.DROP_VIEW_OUTLIERS``, SSG's code);
  with that key False, a part's outliers are left out of that part's triplet only. The triplet
  is ``MODEL.SSG.TRIPLET`` (``MODEL.LOSSES.TRI``: margin, feature normalisation, scale) on the
  head's training features (``MODEL.HEADS.NECK_FEAT``).
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
from canu_plugin.modeling.contract import adversarial_feature
from canu_plugin.modeling.heads import freeze_triplet_only
from canu_plugin.modeling.losses import all_positive_triplet
from canu_plugin.modeling.meta_arch.pseudo_baseline import PseudoBaseline

VIEWS = ("full", "upper", "lower")
TRIPLETS = ("all_positives", "batch_hard")  # MODEL.SSG.TRIPLET
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


def ssg_embedding(in_dim, dim):
    """SSG's extra embedding: FC (no bias, N(0, 0.001) init) + BatchNorm1d + ReLU, (B, in_dim) -> (B, dim)."""
    fc = nn.Linear(in_dim, dim, bias=False)
    nn.init.normal_(fc.weight, std=0.001)
    bn = nn.BatchNorm1d(dim)
    nn.init.constant_(bn.weight, 1.0)
    nn.init.constant_(bn.bias, 0.0)
    return nn.Sequential(fc, bn, nn.ReLU(inplace=True))


@META_ARCH_REGISTRY.register()
class SSG(PseudoBaseline):
    """PseudoBaseline with full / upper / lower embeddings and per-view triplet losses."""

    @configurable
    def __init__(self, *, part_heads, embedding=None, triplet="all_positives", **kwargs):
        super().__init__(**kwargs)
        if triplet not in TRIPLETS:
            raise CanuError(f"MODEL.SSG.TRIPLET {triplet!r}: use one of {TRIPLETS}")
        self.part_heads = part_heads  # ModuleDict upper / lower, built like ``heads``
        self.embedding = embedding    # SSG's FC + BN + ReLU on the pooled full-body feature, or None
        self.triplet = triplet
        freeze_triplet_only([self.heads, *part_heads.values()])  # no ID classifier

    @classmethod
    def from_config(cls, cfg):
        names = tuple(cfg.MODEL.LOSSES.NAME)
        if names != ("TripletLoss",):
            raise CanuError(f"SSG trains with triplet losses only (no ID classifier), got MODEL.LOSSES.NAME {names}: "
                            "set MODEL.LOSSES.NAME ('TripletLoss',)")
        args = super().from_config(cfg)
        args["part_heads"] = nn.ModuleDict({p: build_heads(cfg) for p in PARTS})
        dim = cfg.MODEL.SSG.EMBED_DIM
        args["embedding"] = ssg_embedding(cfg.MODEL.BACKBONE.FEAT_DIM, dim) if dim > 0 else None
        args["triplet"] = cfg.MODEL.SSG.TRIPLET
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
        feature_map = self.backbone(self.preprocess_image(batched_inputs))
        parts = self.part_features(feature_map)
        if not self.training:
            return torch.cat([F.normalize(e, dim=1) for _, e in parts], 1)
        targets = batched_inputs["targets"].to(self.device)
        labels = [targets, *self.part_labels(batched_inputs).unbind(1)]
        feats = [f for f, _ in parts]
        # positives: the pairs of a P x K block (same full-body target) in every view, as SSG's code
        loss_dict = {f"loss_triplet_{v}": self.masked_triplet(f, lab, targets)
                     for v, f, lab in zip(VIEWS, feats, labels)}
        if self.embedding is not None:  # SSG's code: a triplet on the FC embedding, full-body labels
            pooled = self.heads.pool_layer(feature_map)[..., 0, 0]
            loss_dict["loss_triplet_embedding"] = self.masked_triplet(self.embedding(pooled), targets)
        if not return_adv_inputs:
            return loss_dict
        cond = self.centroids_of(targets)
        return loss_dict, [(adversarial_feature(self.adv_feature, f, e), cond) for f, e in parts]

    def masked_triplet(self, features, labels, groups=None):
        """The triplet of ``MODEL.SSG.TRIPLET`` (``MODEL.LOSSES.TRI``: margin, feature normalisation,
        scale) over the samples with a label: SSG's ``all_positives`` (every pair of the same
        ``groups`` value, the P x K block, against the anchor's hardest negative by ``labels``:
        :func:`~canu_plugin.modeling.losses.all_positive_triplet`), or fast-reid's ``batch_hard``
        (positives and negatives both by ``labels``; ``groups`` unused).

        Args:
            features: (B, C'); labels: (B,) cluster labels, -1 = outlier (left out).
            groups: (B,) labels that make the positive pairs (the full-body targets), or None (= ``labels``).
        Returns:
            scalar tensor (0, still attached to ``features``, with fewer than 2 labelled samples).
        """
        keep = labels >= 0
        if int(keep.sum()) < 2:
            return features.sum() * 0.0
        tri = self.loss_kwargs["tri"]
        if self.triplet == "all_positives":
            feats = F.normalize(features[keep], dim=1) if tri["norm_feat"] else features[keep]
            loss = all_positive_triplet(feats, labels[keep], tri["margin"], None if groups is None else groups[keep])
        else:
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
