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
    torch.manual_seed(0)
    model = build_model(_cfg())
    model.install_clusters(pseudo_of(torch.randn(5, 512)))
    images, targets = torch.rand(4, 3, 32, 16) * 255, torch.tensor([0, 1, 4, 4])
    opt = torch.optim.SGD([model.heads.weight], lr=0.05)
    with EventStorage(0):  # fast-reid logs the classifier accuracy there
        first = model({"images": images.clone(), "targets": targets})["loss_cls"]  # (normalised in place)
        first.backward()
        grad = model.heads.weight.grad
        assert grad.shape == (5, 512) and bool((grad.abs().sum(1) > 0).all())  # every class row is in the softmax
        opt.step()  # only the classifier moves; the same batch gives the same (batch-statistics) features
        assert model({"images": images.clone(), "targets": targets})["loss_cls"].item() < first.item()


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


def test_canu_feature_chooses_what_the_camera_branch_sees(pseudo_of):
    """MODEL.CANU.FEATURE: the head's training feature (pooled, NECK_FEAT before) or the unit BNNeck
    embedding, the space of the clusters; the head returns that embedding in training."""
    cfg = _cfg()
    cfg.merge_from_list(["MODEL.HEADS.NECK_FEAT", "before"])
    images, targets = torch.rand(4, 3, 32, 16) * 255, torch.tensor([0, 1, 2, 2])
    outs = {}
    for kind in ("train_feature", "embedding"):
        cfg.MODEL.CANU.FEATURE = kind
        torch.manual_seed(0)
        model = build_model(cfg).train()
        model.install_clusters(pseudo_of(torch.randn(3, 512)))
        with EventStorage(0):
            _, [(feats, cond)] = model({"images": images.clone(), "targets": targets}, return_adv_inputs=True)
            head_out = model.heads(model.backbone(model.preprocess_image({"images": images.clone()})), targets)
        outs[kind] = feats
        assert model.adversarial_dims == [(512, 512)]
    assert torch.allclose(outs["train_feature"], head_out["features"], atol=1e-5)  # the pooled feature
    assert torch.allclose(outs["embedding"], F.normalize(head_out["embedding"], dim=1), atol=1e-5)
    assert torch.allclose(outs["embedding"].norm(dim=1), torch.ones(4), atol=1e-5)
    assert not torch.allclose(head_out["embedding"], head_out["features"])  # BNNeck output != pooled
    cfg.MODEL.CANU.FEATURE = "logits"
    with pytest.raises(CanuError, match="FEATURE"):
        model = build_model(cfg).train()
        model.install_clusters(pseudo_of(torch.randn(3, 512)))
        with EventStorage(0):
            model({"images": images.clone(), "targets": targets}, return_adv_inputs=True)
