"""Temporal pooling inside fast-reid models: clips in training, frame-by-frame inference that equals
the whole-clip forward (average and attention pooling), unchanged checkpoints and image batches."""
import os

import pytest
import torch
from fastreid.modeling import build_model
from torch import nn

from canu_plugin.engine import setup_cfg
from canu_plugin.engine.video import prepare_model
from canu_plugin.errors import CanuError
from canu_plugin.evaluation.video import TrackletPooler
from canu_plugin.modeling.video import TRACKLET_KEY, frame_outputs, install_temporal_pooling

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = os.path.join(REPO, "configs", "synthetic", "quick_sup.yml")
B, T, H, W = 3, 5, 32, 16


def _cfg(pooling="avg", dataset="SynthVidA"):
    return setup_cfg(QUICK, ["MODEL.HEADS.NUM_CLASSES", "5", "MODEL.HEADS.EMBEDDING_DIM", "32", "VIDEO.POOLING", pooling,
                             "DATASETS.NAMES", f'("{dataset}",)'])


def _model(pooling="avg", dataset="SynthVidA"):
    torch.manual_seed(0)
    cfg = _cfg(pooling, dataset)
    model = prepare_model(cfg, build_model(cfg))
    if pooling == "attention":  # non-uniform weights
        nn.init.normal_(model.temporal_pool.attention.weight, std=0.5)
    with torch.no_grad():  # non-trivial BNNeck statistics
        model.train()
        model.heads(model.backbone(torch.rand(8, 3, H, W) * 5), torch.zeros(8, dtype=torch.long))
    return model


def _clips(seed=0):
    return torch.rand(B, T, 3, H, W, generator=torch.Generator().manual_seed(seed)) * 255


@pytest.mark.parametrize("pooling", ["avg", "attention"])
def test_training_pools_per_frame_features_over_time(pooling):
    model = _model(pooling)
    model.train()
    x = _clips()
    feats = model.heads(model.backbone(x.clone()), torch.zeros(B, dtype=torch.long))["features"]
    frame = model.heads.pool_layer(model.backbone(x.clone().flatten(0, 1)))[..., 0, 0].view(B, T, -1)
    if pooling == "avg":
        expected = frame.mean(1)
    else:
        w = torch.softmax(model.temporal_pool.attention(frame).squeeze(-1), 1)
        assert not torch.allclose(w, torch.full_like(w, 1 / T), atol=1e-3)
        expected = (w.unsqueeze(-1) * frame).sum(1)
    assert feats.shape == (B, 512) and torch.allclose(feats, expected, atol=1e-5)


@pytest.mark.parametrize("pooling", ["avg", "attention"])
def test_frame_by_frame_inference_equals_the_whole_clip_forward(pooling):
    model = _model(pooling)
    model.eval()
    x = _clips(1)
    with torch.no_grad():
        whole = model({"images": x.clone()})  # (B, D): one forward per clip
        pooler = TrackletPooler(B)
        frames, owner = x.flatten(0, 1), torch.arange(B).repeat_interleave(T)
        order = torch.randperm(B * T, generator=torch.Generator().manual_seed(0))
        for chunk in order.split(4):  # frames of a tracklet spread over several small batches
            out = model({"images": frames[chunk].clone(), TRACKLET_KEY: owner[chunk]})
            assert out.shape == (len(chunk), 32 + (pooling == "attention"))
            feats, scores = frame_outputs(out, pooling)
            pooler.add(owner[chunk], feats, scores if pooling == "attention" else None)
    assert whole.shape == (B, 32) and torch.allclose(pooler.features(), whole, atol=1e-4)


def test_checkpoints_and_image_batches_are_unchanged():
    plain, video = _model("avg", dataset="SynthA"), _model("avg")
    assert not hasattr(plain, "temporal_pool") and set(plain.state_dict()) == set(video.state_dict())
    assert set(_model("attention").state_dict()) - set(plain.state_dict()) == {
        "temporal_pool.attention.weight", "temporal_pool.attention.bias"}
    video.load_state_dict(plain.state_dict())
    plain.eval(), video.eval()
    images = torch.rand(4, 3, H, W) * 255
    with torch.no_grad():
        assert torch.equal(plain({"images": images.clone()}), video({"images": images.clone()}))
        # a single-frame tracklet is its frame
        assert torch.allclose(video({"images": images.clone()[:, None]}), plain({"images": images.clone()}), atol=1e-5)


def test_attention_scores_only_for_tracklet_frames_and_refused_models():
    model = _model("attention")
    model.eval()
    with torch.no_grad():
        assert model({"images": torch.rand(2, 3, H, W)}).shape == (2, 32)
    model.temporal_pool.seq_len = 4  # as if a clip batch of T = 4 had entered the backbone
    with pytest.raises(CanuError, match="needs the head to see every frame"):
        model.heads.pool_layer(torch.rand(6, 512, 2, 1))
    with pytest.raises(CanuError, match="cannot train on tracklets"):
        install_temporal_pooling(nn.Linear(2, 2))
    with pytest.raises(CanuError, match="already installed"):
        install_temporal_pooling(model)
    with pytest.raises(CanuError, match="VIDEO.POOLING"):
        install_temporal_pooling(_model("avg", dataset="SynthA"), method="max")
