"""Camera discriminators: shapes, registry, and permutation invariance of the conditioning."""
import pytest
import torch

import canu_plugin  # noqa: F401
from canu_plugin.config import add_canu_config
from canu_plugin.modeling.discriminators import DISCRIMINATOR_REGISTRY, build_discriminator
from fastreid.config import get_cfg


@pytest.fixture
def cfg():
    c = add_canu_config(get_cfg())
    c.MODEL.CANU.HIDDEN_DIM = 32
    return c


@pytest.mark.parametrize("merge", ["add", "mul", "concat"])
def test_conditional_shapes(cfg, merge):
    cfg.MODEL.CANU.MERGE = merge
    d = build_discriminator("ConditionalCameraDiscriminator", cfg, 16, 5, cond_dim=8)
    assert d(torch.randn(4, 16), torch.randn(4, 8)).shape == (4, 5)
    assert d.cam_branch[0].in_features == 16 and d.id_branch[0].in_features == 8
    assert isinstance(d.cam_branch[1], torch.nn.BatchNorm1d)


def test_unconditional_and_acan_shapes(cfg):
    d = build_discriminator("CameraDiscriminator", cfg, 16, 3)
    assert d(torch.randn(4, 16)).shape == (4, 3) and not hasattr(d, "id_branch")
    a = build_discriminator("ACANDiscriminator", cfg, 16, 6)
    assert a(torch.randn(4, 16)).shape == (4, 6) and a.hidden[0].out_features == 128
    assert isinstance(a.hidden[1], torch.nn.BatchNorm1d)  # MODEL.ACAN.D_NORM (default)
    cfg.MODEL.ACAN.D_NORM = False
    plain = build_discriminator("ACANDiscriminator", cfg, 16, 6)
    assert [type(m).__name__ for m in plain.hidden] == ["Linear", "ReLU"]
    assert {"ConditionalCameraDiscriminator", "CameraDiscriminator", "ACANDiscriminator"} <= set(
        DISCRIMINATOR_REGISTRY._obj_map)


def test_relabelling_clusters_changes_nothing(cfg):
    """The condition is the centroid itself, not a cluster index: permuting cluster ids (and the
    centroid table with them) gives every sample the same input, hence the same prediction."""
    d = build_discriminator("ConditionalCameraDiscriminator", cfg, 16, 4).eval()
    centroids = torch.randn(6, 16)
    labels = torch.tensor([0, 3, 5, 3, 1, 0])
    perm = torch.randperm(6)             # new id of old cluster k is perm[k]
    new_centroids = torch.empty_like(centroids)
    new_centroids[perm] = centroids
    feats = torch.randn(6, 16)
    out_a = d(feats, centroids[labels])
    out_b = d(feats, new_centroids[perm[labels]])
    assert torch.allclose(out_a, out_b)


def test_bad_merge_is_refused(cfg):
    cfg.MODEL.CANU.MERGE = "max"
    with pytest.raises(ValueError, match="MERGE"):
        build_discriminator("ConditionalCameraDiscriminator", cfg, 16, 4)
