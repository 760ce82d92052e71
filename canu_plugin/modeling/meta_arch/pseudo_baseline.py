"""``PseudoBaseline``: fast-reid's Baseline trained on cluster pseudo-labels.

The clustering hook calls :meth:`PseudoBaseline.set_pseudo_labels` at every re-clustering: the
classifier gets one row per cluster (initialised from the normalised centroids) and the
centroids are kept as a buffer, so that a method can look up the centroid of each sample's
cluster from its pseudo-label (CANU's conditioning input) with :meth:`centroids_of`.
"""
import torch
import torch.nn.functional as F
from fastreid.config import configurable
from fastreid.modeling.meta_arch import META_ARCH_REGISTRY, Baseline

from canu_plugin.errors import CanuError


@META_ARCH_REGISTRY.register()
class PseudoBaseline(Baseline):
    """Baseline + per-epoch pseudo-identity centroids and a resizable classifier."""

    @configurable
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if not hasattr(self.heads, "reset_classifier"):
            raise CanuError(f"{type(self).__name__} needs a resizable head: set "
                            "MODEL.HEADS.NAME PseudoEmbeddingHead")
        # (K, D); not persistent: K changes every epoch, the clustering hook checkpoints it
        self.register_buffer("centroids", torch.zeros(0, 0), persistent=False)

    def forward(self, batched_inputs, return_adv_inputs=False):
        """fast-reid's Baseline forward; in training with ``return_adv_inputs`` also returns the
        discriminator inputs: ``(loss_dict, [(features (B, D), centroids of their clusters (B, D))])``,
        features being the pooled backbone embedding phi(x) the ID losses use."""
        if not (self.training and return_adv_inputs):
            return super().forward(batched_inputs)
        targets = batched_inputs["targets"].to(self.device)
        outputs = self.heads(self.backbone(self.preprocess_image(batched_inputs)), targets)
        return self.losses(outputs, targets), [(outputs["features"], self.centroids_of(targets))]

    @property
    def adversarial_dims(self):
        """``[(feature width, condition width)]``, one entry per discriminator this model feeds."""
        emb = self.heads.weight.size(1)  # eval-mode embedding = centroid width
        if self.heads.neck_feat == "after" or not len(self.heads.bottleneck):
            return [(emb, emb)]
        first = self.heads.bottleneck[0]
        return [(getattr(first, "in_channels", None) or first.num_features, emb)]

    def set_pseudo_labels(self, centroids):
        """Install this epoch's clusters.

        Args:
            centroids: (K, D) centroids of the eval-mode embedding, one per pseudo-identity.
        Returns:
            [(old, new)] replaced classifier parameters the optimizer holds (the trainer swaps them).
        """
        self.centroids = centroids.detach().float().to(self.device)
        return [self.heads.reset_classifier(self.centroids)]

    def classifier_weights(self):
        """Every re-sized classifier weight (checkpointed by the clustering hook): [(K, D)]."""
        return [self.heads.weight]

    def load_classifier_weights(self, weights):
        """Copy saved classifier weights (a list shaped like :meth:`classifier_weights`) in place."""
        for w, saved in zip(self.classifier_weights(), weights, strict=True):
            w.data.copy_(saved.to(w.device))

    def cluster_feature_views(self, features):
        """The feature sets the clustering hook clusters, each on its own (SSG: full/upper/lower).

        Args:
            features: (N, D) raw eval-mode embeddings.
        Returns:
            list of (N, D_v) L2-normalised views; view 0 gives the training labels and centroids.
        """
        return [F.normalize(features, dim=1)]

    def set_view_labels(self, labels_by_path):
        """Labels of the extra clustering views (none for this model): {img_path: (V-1,) ints}."""

    def centroids_of(self, targets):
        """Centroid of each sample's cluster.

        Args:
            targets: (B,) pseudo-labels in [0, K).
        Returns:
            (B, D) centroids (no gradient flows into them).
        """
        if self.centroids.numel() == 0:
            raise CanuError("no pseudo-labels yet: the clustering hook must run before training steps")
        return self.centroids[targets.to(self.centroids.device)]
