"""PseudoEmbeddingHead / PseudoBaseline: the classifier follows the clusters."""
import pytest
import torch
import torch.nn.functional as F

import canu_plugin  # noqa: F401
from canu_plugin.config import add_canu_config
from canu_plugin.errors import CanuError
from fastreid.config import get_cfg
from fastreid.modeling import build_model
from fastreid.utils.events import EventStorage


def _cfg():
    cfg = add_canu_config(get_cfg())
    cfg.merge_from_list(["MODEL.META_ARCHITECTURE", "PseudoBaseline", "MODEL.HEADS.NAME", "PseudoEmbeddingHead",
                         "MODEL.BACKBONE.DEPTH", "18x", "MODEL.BACKBONE.FEAT_DIM", "512",
                         "MODEL.HEADS.WITH_BNNECK", "True", "MODEL.HEADS.NUM_CLASSES", "1",
                         "MODEL.DEVICE", "cpu", "MODEL.LOSSES.NAME", "('CrossEntropyLoss',)"])
    return cfg


def test_reset_classifier_resizes_and_initialises_from_centroids(pseudo_of):
    model = build_model(_cfg())
    centroids = torch.randn(7, 512)
    [(old, new)] = model.install_clusters(pseudo_of(centroids))  # the pairs the optimizer must swap
    assert old.shape == (1, 512) and new.shape == (7, 512)
    assert model.heads.weight is new and model.heads.num_classes == 7
    assert torch.allclose(new, F.normalize(centroids, dim=1))
    assert model.heads.cls_layer.num_classes == 7
    targets = torch.tensor([6, 0, 6])
    assert torch.equal(model.centroids_of(targets), centroids[targets])


def test_training_step_uses_the_new_classes(pseudo_of):
    model = build_model(_cfg())
    model.install_clusters(pseudo_of(torch.randn(5, 512)))
    batch = {"images": torch.rand(4, 3, 32, 16) * 255, "targets": torch.tensor([0, 1, 4, 4])}
    with EventStorage(0):  # fast-reid logs the classifier accuracy there
        losses = model(batch)
    losses["loss_cls"].backward()
    assert model.heads.weight.grad.shape == (5, 512)


def test_centroid_lookup_before_clustering_is_an_error():
    model = build_model(_cfg())
    with pytest.raises(CanuError, match="clustering hook"):
        model.centroids_of(torch.tensor([0]))
    with pytest.raises(ValueError, match=r"\(K, 512\)"):
        model.heads.reset_classifier(torch.randn(3, 8))


def test_baseline_head_is_refused():
    cfg = _cfg()
    cfg.MODEL.HEADS.NAME = "EmbeddingHead"
    with pytest.raises(CanuError, match="PseudoEmbeddingHead"):
        build_model(cfg)


def test_freeze_triplet_only_freezes_classifier_and_unused_neck():
    from canu_plugin.modeling.heads import freeze_triplet_only
    model = build_model(_cfg())
    model.heads.neck_feat = "before"
    freeze_triplet_only([model.heads])
    assert not model.heads.weight.requires_grad
    assert not any(p.requires_grad for p in model.heads.bottleneck.parameters())
    other = build_model(_cfg())
    other.heads.neck_feat = "after"  # the losses see the neck's output: it trains
    freeze_triplet_only([other.heads])
    assert not other.heads.weight.requires_grad and other.heads.bottleneck[0].weight.requires_grad
