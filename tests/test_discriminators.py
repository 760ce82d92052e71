"""Camera discriminators: shapes, registry, and permutation invariance of the conditioning."""
import pytest
import torch

import canu_plugin  # noqa: F401
from canu_plugin.config import add_canu_config
from canu_plugin.modeling.discriminators import DISCRIMINATOR_REGISTRY, build_discriminator
from fastreid.config import get_cfg
from fastreid.utils.events import EventStorage


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


def test_condition_follows_the_cluster_not_its_number(cfg, pseudo_of):
    """A pseudo-label model conditions each sample on the centroid of its own cluster: the same
    clustering numbered differently (ids permuted, centroid table with them) gives every sample the
    same discriminator input and prediction."""
    from canu_plugin.engine import setup_cfg
    from fastreid.modeling import build_model
    torch.manual_seed(0)
    model = build_model(setup_cfg("configs/synthetic/quick_pseudo.yml")).train()
    d = build_discriminator("ConditionalCameraDiscriminator", cfg, 512, 4, cond_dim=512).eval()
    centroids, labels = torch.randn(6, 512), torch.tensor([0, 3, 5, 3, 1, 0])
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(3))  # new id of old cluster k
    renumbered = torch.empty_like(centroids)
    renumbered[perm] = centroids
    images = torch.rand(6, 3, 32, 16) * 255
    outs = []
    for table, targets in ((centroids, labels), (renumbered, perm[labels])):
        model.install_clusters(pseudo_of(table))
        with EventStorage(0):  # fast-reid logs the classifier accuracy there
            _, [(feats, cond)] = model({"images": images.clone(), "targets": targets,  # (normalised in place)
                                        "camids": torch.zeros(6).long()},
                                       return_adv_inputs=True)
        outs.append((cond, d(feats.detach(), cond)))
    assert torch.equal(outs[0][0], centroids[labels]) and torch.equal(outs[0][0], outs[1][0])
    assert torch.allclose(outs[0][1], outs[1][1], atol=1e-6)


def test_bad_merge_is_refused(cfg):
    cfg.MODEL.CANU.MERGE = "max"
    with pytest.raises(ValueError, match="MERGE"):
        build_discriminator("ConditionalCameraDiscriminator", cfg, 16, 4)
