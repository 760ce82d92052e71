"""``ACAN``: Adversarial Camera Alignment Network (Qi et al.), intra-camera labels only.

Training batches come from :func:`canu_plugin.data.intra_camera.build_acan_train_loader`: a
triplet part (P x K groups, each from one camera) and a camera-balanced part (floor(64 / C) images
per camera), told apart by the ``acan_part`` field (0 / 1). One forward pass embeds both:

- loss: the per-camera batch-hard triplet (Eq. 11-12; margin ``MODEL.LOSSES.TRI.MARGIN``, 0.3)
  on the triplet part. No ID classifier: the paper learns discrimination with the triplet only
  (Sec. III-B), and a softmax over all per-camera labels would push apart the same person's
  labels in different cameras. The head's classifier is therefore frozen (no gradient, skipped by
  the optimizer, invisible to DDP), and ``MODEL.LOSSES.NAME`` must be ``("TripletLoss",)``;
- adversarial input (``return_adv_inputs=True``): ``[(features of the camera-balanced part, None,
  their camids)]`` for :class:`canu_plugin.engine.adversarial.AdversarialTrainer`, which applies
  the scheme of ``MODEL.ACAN.SCHEME`` ("grl", "oce", "ace"; "none" = triplet only, no discriminator).

The features are the head's training ``features`` (``MODEL.HEADS.NECK_FEAT``; the ACAN configs use
the pooled backbone output with no BNNeck, the paper's F(x)); evaluation uses the head's eval
output, which is the same tensor when there is no BNNeck. The camera-balanced part also passes
through the BatchNorm layers in "none" mode, so every scheme trains on identical batches.
A batch without ``acan_part`` (e.g. a plain fast-reid loader) uses every sample for both terms.
"""
import torch
import torch.nn.functional as F
from fastreid.config import configurable
from fastreid.modeling.meta_arch import META_ARCH_REGISTRY, Baseline

from canu_plugin.data.keys import CAMERA_PART, PART_KEY
from canu_plugin.errors import CanuError
from canu_plugin.modeling.contract import AdversarialModel
from canu_plugin.modeling.heads import freeze_triplet_only
from canu_plugin.modeling.losses import per_camera_triplet


def _feature_dim(cfg):
    """Width of the head's training ``features`` (B, D)."""
    emb, feat = cfg.MODEL.HEADS.EMBEDDING_DIM, cfg.MODEL.BACKBONE.FEAT_DIM
    return emb if cfg.MODEL.HEADS.NECK_FEAT == "after" and emb > 0 else feat


@META_ARCH_REGISTRY.register()
class ACAN(Baseline, AdversarialModel):
    """fast-reid Baseline trained with ACAN's per-camera triplet and camera-adversarial inputs."""

    @configurable
    def __init__(self, *, feature_dim, **kwargs):
        super().__init__(**kwargs)
        self.feature_dim = int(feature_dim)
        freeze_triplet_only([self.heads])  # no ID classifier; the BNNeck only serves evaluation

    @classmethod
    def from_config(cls, cfg):
        names = tuple(cfg.MODEL.LOSSES.NAME)
        if names != ("TripletLoss",):
            raise CanuError(f"ACAN trains with its per-camera triplet loss only (paper Sec. III-B), got "
                            f"MODEL.LOSSES.NAME {names}: set MODEL.LOSSES.NAME ('TripletLoss',)")
        if not cfg.MODEL.LOSSES.TRI.HARD_MINING:
            raise CanuError("ACAN's triplet loss is batch-hard (paper Eq. 12): set MODEL.LOSSES.TRI.HARD_MINING True")
        args = super().from_config(cfg)
        args["feature_dim"] = _feature_dim(cfg)
        return args

    def forward(self, batched_inputs, return_adv_inputs=False):
        """Evaluation: fast-reid's (B, D) embeddings. Training: ``{"loss_triplet": scalar}``, and
        with ``return_adv_inputs`` also ``[(features (B_adv, D), None, camids (B_adv,))]``."""
        if not self.training:
            return super().forward(batched_inputs)
        targets = batched_inputs["targets"].to(self.device)
        camids = batched_inputs["camids"].to(self.device)
        outputs = self.heads(self.backbone(self.preprocess_image(batched_inputs)), targets)
        features = outputs["features"]
        tri, adv = self.split(batched_inputs, len(targets))
        loss_dict = self.triplet_losses(features[tri], targets[tri], camids[tri])
        if not return_adv_inputs:
            return loss_dict
        return loss_dict, [(features[adv], None, camids[adv])]

    def split(self, batched_inputs, batch_size):
        """Boolean masks (B,) of the triplet part and of the camera-balanced part."""
        part = batched_inputs.get(PART_KEY) if isinstance(batched_inputs, dict) else None
        if part is None:
            every = torch.ones(batch_size, dtype=torch.bool, device=self.device)
            return every, every
        adv = torch.as_tensor(part, device=self.device) == CAMERA_PART
        if adv.all() or not adv.any():
            raise CanuError("an ACAN batch needs both a triplet part and a camera-balanced part: build the loader "
                            "with canu_plugin.data.intra_camera.build_acan_train_loader (MODEL.ACAN.ENABLED True)")
        return ~adv, adv

    def triplet_losses(self, features, pids, camids):
        """Per-camera batch-hard triplet.

        Args:
            features: (B, D); pids: (B,) per-camera labels; camids: (B,).
        Returns:
            ``{"loss_triplet": scalar}`` (x ``MODEL.LOSSES.TRI.SCALE``).
        """
        tri = self.loss_kwargs["tri"]
        if tri["norm_feat"]:
            features = F.normalize(features, dim=1)
        return {"loss_triplet": per_camera_triplet(features, pids, camids, tri["margin"]) * tri["scale"]}

    @property
    def adversarial_dims(self):
        """``[(feature width, feature width)]``: one unconditional discriminator on the features."""
        return [(self.feature_dim, self.feature_dim)]
