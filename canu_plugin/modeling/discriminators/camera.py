"""The camera discriminators of CANU-ReID (conditional, unconditional) and ACAN."""
import torch
from torch import nn

from canu_plugin.modeling.discriminators.build import DISCRIMINATOR_REGISTRY

MERGES = ("add", "concat", "mul")


def _fc(d_in, d_out, bn=True):
    layers = [nn.Linear(d_in, d_out)]
    if bn:
        layers.append(nn.BatchNorm1d(d_out))
    return nn.Sequential(*layers, nn.ReLU(inplace=True))


@DISCRIMINATOR_REGISTRY.register()
class ConditionalCameraDiscriminator(nn.Module):
    """CANU-ReID's ``D_C-CAM(phi(x), phi_p)``: a camera branch fed the feature and an ID branch fed
    the centroid of the sample's pseudo-identity, FC [D -> H] + BN + ReLU each, merged, then
    [H -> H] + BN + ReLU and [H -> #cameras] (H = 1024 in the paper).

    The paper does not say how the branches merge; ``MODEL.CANU.MERGE`` chooses: "add" (default,
    keeps the paper's [1024 -> 1024] joint layer), "mul" (also H wide) or "concat" ([2H -> H]).
    """

    def __init__(self, cfg, feat_dim, num_cameras, cond_dim):
        super().__init__()
        hidden, self.merge = cfg.MODEL.CANU.HIDDEN_DIM, cfg.MODEL.CANU.MERGE
        if self.merge not in MERGES:
            raise ValueError(f"MODEL.CANU.MERGE must be one of {MERGES}, got {self.merge!r}")
        self.cam_branch = _fc(feat_dim, hidden)
        self.id_branch = _fc(cond_dim, hidden)
        self.joint = _fc(2 * hidden if self.merge == "concat" else hidden, hidden)
        self.classifier = nn.Linear(hidden, num_cameras)

    def forward(self, features, condition):
        """features (B, D), condition (B, D') -> camera logits (B, C)."""
        a, b = self.cam_branch(features), self.id_branch(condition)
        merged = {"add": lambda: a + b, "mul": lambda: a * b, "concat": lambda: torch.cat([a, b], 1)}[self.merge]()
        return self.classifier(self.joint(merged))


@DISCRIMINATOR_REGISTRY.register()
class CameraDiscriminator(nn.Module):
    """The unconditional ablation (+Adv): the camera branch only, same sizes; ignores the condition."""

    def __init__(self, cfg, feat_dim, num_cameras, cond_dim=None):
        super().__init__()
        hidden = cfg.MODEL.CANU.HIDDEN_DIM
        self.cam_branch = _fc(feat_dim, hidden)
        self.joint = _fc(hidden, hidden)
        self.classifier = nn.Linear(hidden, num_cameras)

    def forward(self, features, condition=None):
        """features (B, D) -> camera logits (B, C)."""
        return self.classifier(self.joint(self.cam_branch(features)))


@DISCRIMINATOR_REGISTRY.register()
class ACANDiscriminator(nn.Module):
    """ACAN's discriminator: "a fully connected layer ... whose dimension is set as 128", read as
    one hidden FC layer [D -> 128] (+ BN) + ReLU followed by the camera classifier [128 -> C]
    (``MODEL.ACAN.HIDDEN_DIM``; the paper sweeps 64..512).

    The paper does not say whether the hidden layer is normalised. Without normalisation, on raw
    pooled features (norms in the tens) and SGD at 0.01, most hidden ReLUs die within the first
    epoch and D stays near chance, so no scheme gets an alignment signal; ``MODEL.ACAN.D_NORM``
    (default True) adds BatchNorm before the ReLU, as CANU's discriminator has.
    """

    def __init__(self, cfg, feat_dim, num_cameras, cond_dim=None):
        super().__init__()
        self.hidden = _fc(feat_dim, cfg.MODEL.ACAN.HIDDEN_DIM, bn=cfg.MODEL.ACAN.D_NORM)
        self.classifier = nn.Linear(cfg.MODEL.ACAN.HIDDEN_DIM, num_cameras)

    def forward(self, features, condition=None):
        """features (B, D) -> camera logits (B, C)."""
        return self.classifier(self.hidden(features))
