"""What the engine may ask of a meta-architecture: the written contract of the plugin's models.

:class:`AdversarialModel` — a model trained with camera discriminators (CANU's +Adv / +CANU, ACAN):

- ``adversarial_dims``: one ``(feature width, condition width)`` per discriminator it feeds;
- ``forward(batch, return_adv_inputs=True)`` (training) returns ``(loss_dict, inputs)``, ``inputs``
  holding one ``(features (B', D), condition (B', D') or None[, camids (B',)])`` per discriminator
  (camids default to the batch's; the condition never receives an adversarial gradient).

:class:`PseudoLabelModel` — a model trained on cluster pseudo-labels (PseudoBaseline, MMT, SSG), also
an AdversarialModel (conditioned on the centroid of each sample's cluster):

- ``cluster_forward(batch)``: (B, D) eval-mode features of images to cluster (default: ``self(batch)``);
- ``cluster_views(features)``: the feature sets to cluster, each on its own; view 0 gives the
  training labels and the centroids, views 1.. arrive in batches as ``"view_targets"`` (SSG);
- ``install_clusters(pseudo, classifier_weights=None)``: take a :class:`~canu_plugin.data.pseudo_labels.
  PseudoLabels` (keep its centroids for conditioning, re-size the ID classifiers from them, or set
  them to saved ``classifier_weights``); returns ``[(old, new)]`` parameters the optimizer must swap;
- ``classifier_weights()``: the re-sized classifier weights, to checkpoint with the labels;
- ``num_train_views``: augmented views per training image (MMT: 2, ``"images"`` and ``"images_2"``);
- ``has_mean_teachers``: True for a model whose ``update_teachers()`` moves EMA teachers, called
  after every optimizer step (MMT);
- ``resets_optimizer_state``: True for a model whose optimizer state (all parameters) restarts with
  each new clustering (MMT's code builds a new optimizer after each clustering); False: only the
  re-sized classifiers' state restarts;
- ``supports_source_training``: True for a model whose classifier takes the labelled source identities
  beside the clusters (``PSEUDO.TRAIN_SOURCE``): ``install_clusters`` sizes it from
  ``pseudo.classifier_centroids`` (K + S rows), and its losses need nothing but the batch's labels.

The engine checks ``isinstance`` against these classes; nothing tests a model by its name.
"""
import abc

import torch
import torch.nn.functional as F

from canu_plugin.errors import CanuError


ADV_FEATURES = ("train_feature", "embedding")  # MODEL.CANU.FEATURE


def adversarial_feature(kind, train_feature, embedding):
    """The feature a CANU discriminator's camera branch sees (``MODEL.CANU.FEATURE``).

    Args:
        kind: "train_feature" (what the ID losses see, ``MODEL.HEADS.NECK_FEAT``) or "embedding"
            (the L2-normalised BNNeck embedding: the space the clusters and their centroids live in).
        train_feature: (B, D'); embedding: (B, D).
    Returns:
        (B, D') or (B, D).
    """
    if kind not in ADV_FEATURES:
        raise CanuError(f"MODEL.CANU.FEATURE {kind!r}: use one of {ADV_FEATURES}")
    return train_feature if kind == "train_feature" else F.normalize(embedding, dim=1)


class AdversarialModel(abc.ABC):
    """A meta-architecture that feeds camera discriminators (see the module docstring)."""

    @property
    @abc.abstractmethod
    def adversarial_dims(self):
        """``[(feature width, condition width)]``, one entry per discriminator this model feeds."""


class PseudoLabelModel(AdversarialModel):
    """Mixin of the pseudo-label meta-architectures (see the module docstring). Call
    :meth:`init_pseudo_label_state` in ``__init__``."""

    num_train_views = 1
    has_mean_teachers = False
    resets_optimizer_state = False
    supports_source_training = False

    def init_pseudo_label_state(self):
        """Register the (K, D) centroid buffer (not persistent: the clustering hook checkpoints the labels)."""
        self.register_buffer("centroids", torch.zeros(0, 0), persistent=False)

    def cluster_forward(self, batched_inputs):
        """(B, D) eval-mode features of a batch of images, what the label generator clusters."""
        return self(batched_inputs)

    def cluster_views(self, features):
        """The feature sets to cluster, each on its own.

        Args:
            features: (N, D) raw :meth:`cluster_forward` features.
        Returns:
            list of (N, D_v) L2-normalised views; view 0 gives the training labels and centroids.
        """
        return [F.normalize(features, dim=1)]

    @abc.abstractmethod
    def install_clusters(self, pseudo, classifier_weights=None):
        """Install a clustering (see the module docstring).

        Args:
            pseudo: :class:`~canu_plugin.data.pseudo_labels.PseudoLabels` with (K, D) centroids.
            classifier_weights: None (initialise the classifiers from the centroids) or a list shaped
                like :meth:`classifier_weights` (saved with these clusters: resume).
        Returns:
            [(old, new)] replaced parameters the optimizer holds.
        """

    def classifier_weights(self):
        """Every re-sized classifier weight, [(K, D)] ([] without an ID classifier)."""
        return []

    def set_centroids(self, centroids):
        """Keep the (K, D) centroids for conditioning, on the model's device."""
        self.centroids = centroids.detach().float().to(self.device)

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


__all__ = ["ADV_FEATURES", "adversarial_feature", "AdversarialModel", "PseudoLabelModel"]
