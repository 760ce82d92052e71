"""``PseudoBaseline``: fast-reid's Baseline trained on cluster pseudo-labels (a
:class:`~canu_plugin.modeling.contract.PseudoLabelModel`).

At every clustering the trainer calls :meth:`PseudoBaseline.install_clusters`: the classifier gets
one row per cluster (initialised from the normalised centroids) and the centroids are kept as a
buffer, so that the centroid of each sample's cluster can be looked up from its pseudo-label
(CANU's conditioning input) with ``centroids_of``.
"""
from fastreid.config import configurable
from fastreid.modeling.meta_arch import META_ARCH_REGISTRY, Baseline

from canu_plugin.errors import CanuError
from canu_plugin.modeling.contract import ADV_FEATURES, PseudoLabelModel, adversarial_feature


@META_ARCH_REGISTRY.register()
class PseudoBaseline(Baseline, PseudoLabelModel):
    """Baseline + per-epoch pseudo-identity centroids and a resizable classifier."""

    supports_source_training = True

    @configurable
    def __init__(self, *, adv_feature="train_feature", reset_optimizer=False, **kwargs):
        super().__init__(**kwargs)
        self.resets_optimizer_state = bool(reset_optimizer)  # PSEUDO.RESET_OPTIMIZER (the trainer acts on it)
        if not hasattr(self.heads, "reset_classifier"):
            raise CanuError(f"{type(self).__name__} needs a resizable head: set "
                            "MODEL.HEADS.NAME PseudoEmbeddingHead")
        if adv_feature not in ADV_FEATURES:
            raise CanuError(f"MODEL.CANU.FEATURE {adv_feature!r}: use one of {ADV_FEATURES}")
        self.adv_feature = adv_feature  # MODEL.CANU.FEATURE: what the camera branch of D sees
        self.init_pseudo_label_state()

    @classmethod
    def from_config(cls, cfg):
        return {**super().from_config(cfg), "adv_feature": cfg.MODEL.CANU.FEATURE,
                "reset_optimizer": cfg.PSEUDO.RESET_OPTIMIZER}

    def forward(self, batched_inputs, return_adv_inputs=False):
        """fast-reid's Baseline forward; in training with ``return_adv_inputs`` also returns the
        discriminator inputs: ``(loss_dict, [(features (B, D'), centroids of their clusters (B, D))])``,
        features as ``MODEL.CANU.FEATURE`` says (:func:`~canu_plugin.modeling.contract.adversarial_feature`)."""
        if not (self.training and return_adv_inputs):
            return super().forward(batched_inputs)
        targets = batched_inputs["targets"].to(self.device)
        outputs = self.heads(self.backbone(self.preprocess_image(batched_inputs)), targets)
        feats = adversarial_feature(self.adv_feature, outputs["features"], outputs["embedding"])
        return self.losses(outputs, targets), [(feats, self.centroids_of(targets))]

    @property
    def adversarial_dims(self):
        """``[(feature width, condition width)]``, one entry per discriminator this model feeds."""
        emb = self.heads.weight.size(1)  # eval-mode embedding = centroid width
        if self.adv_feature == "embedding" or self.heads.neck_feat == "after" or not len(self.heads.bottleneck):
            return [(emb, emb)]
        first = self.heads.bottleneck[0]
        return [(getattr(first, "in_channels", None) or first.num_features, emb)]

    def install_clusters(self, pseudo, classifier_weights=None):
        """Keep the (K, D) centroids and re-size the classifier to K rows (normalised centroids, or
        ``classifier_weights`` [(K, D)] saved with these clusters); with ``PSEUDO.TRAIN_SOURCE``,
        K + S rows, the source identities' after the clusters' (``pseudo.classifier_centroids``).

        Returns:
            [(old, new)] the replaced classifier parameter (the trainer swaps it in the optimizer).
        """
        self.set_centroids(pseudo.centroids)
        pairs = [self.heads.reset_classifier(pseudo.classifier_centroids.to(self.device))]
        if classifier_weights is not None:
            for w, saved in zip(self.classifier_weights(), classifier_weights, strict=True):
                w.data.copy_(saved.to(w.device))
        return pairs

    def classifier_weights(self):
        """The re-sized classifier weight: [(K [+ S], D)]."""
        return [self.heads.weight]
