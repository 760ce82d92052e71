"""SSG / CANU-SSG: the three embeddings, per-view clustering contract, per-part triplets (SSG's
P x K-block positives, outliers masked), samples that are outliers in any view left out of
training, full-body conditioning of the three discriminators, source-checkpoint loading, and tiny
real runs through canu_plugin's Trainer (CPU)."""
import copy
import os
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fastreid.modeling.losses import triplet_loss
from fastreid.utils.checkpoint import Checkpointer

from canu_plugin.data.pseudo_labels import PseudoLabels
from canu_plugin.engine import Trainer, setup_cfg
from canu_plugin.engine.hooks import ClusteringHook
from canu_plugin.engine.run_files import epoch_records
from canu_plugin.errors import CanuError
from canu_plugin.modeling.losses import all_positive_triplet
from canu_plugin.modeling.meta_arch.ssg import VIEWS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = os.path.join(REPO, "configs", "synthetic", "quick_ssg.yml")
FAST = ["CLUSTERING.K1", "10", "CLUSTERING.K2", "3", "TEST.EVAL_PERIOD", "100"]
D = 512  # ResNet-18 feature width (no embedding layer)


def build(*opts):
    torch.manual_seed(0)
    return Trainer.build_model(setup_cfg(QUICK, list(opts)))


def batch(b=8, paths=None):
    return {"images": torch.rand(b, 3, 32, 16) * 255, "targets": torch.arange(b) // 2,
            "img_paths": paths or [f"img{i}.jpg" for i in range(b)], "camids": torch.arange(b) % 2}


def test_three_embeddings_pool_disjoint_halves():
    model = build().eval()
    assert model(batch(4)).shape == (4, 3 * D)
    fmap = torch.zeros(2, D, 4, 2)
    top = fmap.clone()
    top[:, :, :2] = torch.rand(2, D, 2, 2) + 1
    base, moved = model.part_features(fmap), model.part_features(top)
    changed = [not torch.allclose(a[1], b[1]) for a, b in zip(base, moved)]
    assert changed == [True, True, False]  # full, upper, lower
    assert all(f.shape == (2, D) and e.shape == (2, D) for f, e in moved)
    with pytest.raises(CanuError, match="1 row"):
        model.part_features(torch.zeros(1, D, 1, 2))


def test_cluster_views_split_and_normalise():
    model = build()
    raw = torch.randn(10, 3 * D) * 5
    views = model.cluster_views(raw)
    assert len(views) == 3
    for k, v in enumerate(views):
        assert v.shape == (10, D)
        assert torch.allclose(v.norm(dim=1), torch.ones(10), atol=1e-5)
        assert torch.allclose(v, F.normalize(raw[:, k * D:(k + 1) * D], dim=1))
    with pytest.raises(ValueError):
        model.cluster_views(torch.randn(3, 3 * D + 1))


def test_part_labels_come_with_the_batch_and_outliers_are_left_out_of_the_part_triplet():
    model = build().train()
    data = batch(8)
    upper = [0, 0, 1, 1, 2, 2, -1, -1]
    lower = [-1] * 8
    data["view_targets"] = torch.tensor([upper, lower]).T
    assert model.part_labels(data)[:, 0].tolist() == upper
    with pytest.raises(CanuError, match="view_targets"):
        model.part_labels({k: v for k, v in data.items() if k != "view_targets"})
    feats = torch.randn(8, D, requires_grad=True)
    labels = torch.tensor(upper)
    loss = model.masked_triplet(feats, labels)
    assert torch.allclose(loss, all_positive_triplet(feats[:6], labels[:6], 0.5))  # SSG's triplet (default)
    loss.backward()
    assert torch.count_nonzero(feats.grad[6:]) == 0
    hard = build("MODEL.SSG.TRIPLET", "batch_hard").masked_triplet(feats, labels)
    assert torch.allclose(hard, triplet_loss(feats[:6], labels[:6], 0.5, False, True))  # fast-reid's
    losses = model(data)
    assert set(losses) == {"loss_triplet_full", "loss_triplet_upper", "loss_triplet_lower", "loss_triplet_embedding"}
    assert losses["loss_triplet_lower"].item() == 0.0  # every sample is a lower-body outlier
    assert "loss_triplet_embedding" not in build("MODEL.SSG.EMBED_DIM", "0").train()(data)


def ssg_semi_ohem(features, labels, k, margin=0.5):
    """SSG's triplet loop (reid/loss/triplet.py, "semi OHEM") written out: for every anchor a of each
    P x K block, every later sample of the same block is a positive and the anchor's negative is its
    nearest sample with another ``labels`` value: mean of relu(d(a, p) - d(a, n) + margin)."""
    dist = torch.cdist(features, features)
    terms = []
    for start in range(0, len(labels), k):
        for a in range(start, start + k):
            d_an = dist[a][labels != labels[a]].min()
            terms += [F.relu(dist[a, p] - d_an + margin) for p in range(a + 1, start + k)]
    return torch.stack(terms).mean()


def test_part_triplet_positives_are_the_pxk_block_and_negatives_the_part_clusters():
    """SSG's code: the part triplets' positives are the pairs of a P x K block (the full-body cluster
    the sampler drew), only the negatives follow the part's labels; the full body and the FC
    embedding use the full-body labels for both."""
    torch.manual_seed(0)
    feats, blocks = torch.randn(12, 6), torch.arange(12) // 4
    part = torch.tensor([0, 1, 1, 2, 2, 3, 3, 0, 0, 0, 1, 1])  # block mates in other part clusters, and the reverse
    ref = ssg_semi_ohem(feats, part, k=4)
    assert torch.allclose(all_positive_triplet(feats, part, 0.5, groups=blocks), ref)
    assert not torch.allclose(all_positive_triplet(feats, part, 0.5), ref)  # positives by part label: not SSG's
    assert torch.allclose(all_positive_triplet(feats, blocks, 0.5), ssg_semi_ohem(feats, blocks, k=4))
    model = build().train()
    data = batch(8)  # P x K = 4 x 2
    data["view_targets"] = torch.tensor([[0, 1, 1, 2, 2, 3, 3, 0], [0, 0, 1, 1, 2, 2, 3, 3]]).T
    views, images, targets = data["view_targets"].clone(), data["images"].clone(), data["targets"].clone()
    losses = model(data)
    with torch.no_grad():  # the same batch again: the train-mode BN normalises with the batch's statistics
        parts = model.part_features(model.backbone(model.preprocess_image({"images": images})))
    for (f, _), name, labels in zip(parts, VIEWS, [targets, *views.T]):
        assert torch.allclose(losses[f"loss_triplet_{name}"].detach(), ssg_semi_ohem(f, labels, k=2), atol=1e-5), name


def test_embedding_triplet_uses_ssgs_fc_bn_relu_on_the_pooled_full_body_feature():
    model = build().train()
    fc, bn, relu = model.embedding
    assert (fc.in_features, fc.out_features, fc.bias) == (D, 2048, None) and isinstance(relu, torch.nn.ReLU)
    assert float(fc.weight.std()) == pytest.approx(0.001, rel=0.05) and torch.equal(bn.weight, torch.ones(2048))
    data = batch(8)
    images = data["images"].clone()
    data["view_targets"] = torch.zeros(8, 2, dtype=torch.long)
    loss = model(data)["loss_triplet_embedding"]
    with torch.no_grad():  # by hand: pooled full-body map -> FC + BN (the batch's statistics) + ReLU -> triplet
        pooled = model.backbone(model.preprocess_image({"images": images})).mean((2, 3))
        emb = copy.deepcopy(model.embedding)(pooled)
    assert torch.allclose(loss.detach(), all_positive_triplet(emb, data["targets"], 0.5), atol=1e-5)


def test_no_classifier_and_adversarial_pairs_carry_the_full_body_centroid(pseudo_of):
    model = build().train()
    centroids = torch.randn(4, D)
    with pytest.raises(CanuError, match="upper and lower"):
        model.install_clusters(pseudo_of(centroids))
    assert model.install_clusters(pseudo_of(centroids, view_labels=np.zeros((4, 2), np.int64))) == []
    assert model.classifier_weights() == []
    assert model.adversarial_dims == [(D, D)] * 3
    data = batch(8)
    data["view_targets"] = torch.tensor([[i % 3, i % 2] for i in range(8)])
    targets = data["targets"].clone()
    losses, pairs = model(data, return_adv_inputs=True)
    assert len(pairs) == 3 and len(losses) == 4  # three views + the FC embedding
    for f, c in pairs:
        assert f.shape == (8, D) and torch.equal(c, centroids[targets])
    assert not any(torch.equal(pairs[0][0], p[0]) for p in pairs[1:])


def test_supervised_baseline_checkpoint_loads_into_ssg(tmp_path):
    source = build("MODEL.META_ARCHITECTURE", "Baseline", "MODEL.HEADS.NAME", "EmbeddingHead",
                   "MODEL.HEADS.NUM_CLASSES", "5")
    torch.save({"model": source.state_dict()}, tmp_path / "src.pth")
    model = build()
    Checkpointer(model).load(str(tmp_path / "src.pth"))
    state, src = model.state_dict(), source.state_dict()
    for k in src:
        if k.startswith("backbone.") or k.startswith("heads.bottleneck"):
            assert torch.equal(state[k], src[k]), k
    for part in ("upper", "lower"):
        bn = model.part_heads[part].bottleneck[0]
        assert torch.equal(bn.weight, torch.ones(D)) and torch.equal(bn.running_mean, torch.zeros(D))


@pytest.mark.parametrize("drop", [True, False])
def test_clusters_left_after_dropping_view_outliers_decide_whether_a_clustering_is_kept(pseudo_of, drop):
    """16 samples in 4 full-body clusters (a 4 x 4 batch needs 4); cluster 3 is all upper-body outliers."""
    cfg = setup_cfg(QUICK, ["PSEUDO.GT_DIAGNOSTICS", "False", "PSEUDO.DROP_VIEW_OUTLIERS", str(drop)])
    labels = np.arange(16) // 4
    views = np.stack([np.where(labels == 3, -1, labels), labels], 1)
    pseudo = pseudo_of(torch.zeros(4, D), labels, views)
    hook = ClusteringHook(cfg, SimpleNamespace(target=SimpleNamespace(camids=np.arange(16) % 2)))
    report = hook._report(pseudo, epoch=0)
    assert (report["num_clusters"], report["train_clusters"], report["train_samples"]) == (4, 3 if drop else 4,
                                                                                           12 if drop else 16)
    if drop:
        with pytest.raises(CanuError, match="3 clusters to train on .*4 left out as outliers of at least one view"):
            hook._accept(pseudo, report)
    else:
        assert hook._accept(pseudo, report)


@pytest.fixture
def make_trainer(tiny_trainer):
    return lambda out, *opts: tiny_trainer(QUICK, out, *FAST, *opts)


def hook_of(trainer):
    return next(h for h in trainer._hooks if isinstance(h, ClusteringHook))


def record_batches(trainer):
    """The image paths of every training batch the model gets (filled as the trainer runs)."""
    seen = []

    def record(module, args):
        if module.training:
            seen.extend(args[0]["img_paths"])
    trainer.unwrapped_model.register_forward_pre_hook(record)
    return seen


def part_only_outliers(trainer):
    """Paths of the samples clustered in the full body but outliers (-1) of a part (the last clustering)."""
    pseudo = hook_of(trainer).pseudo
    part_only = (pseudo.labels >= 0) & (pseudo.view_labels < 0).any(1)
    return {p for p, out in zip(trainer.target_set.paths, part_only) if out}


ONE_EPOCH = ["SOLVER.MAX_EPOCH", "1", "PSEUDO.ITERS_PER_EPOCH", "8"]


def test_tiny_ssg_epoch(make_trainer, tmp_path):
    trainer = make_trainer(tmp_path, *ONE_EPOCH)
    seen = record_batches(trainer)
    trainer.train()
    pseudo = hook_of(trainer).pseudo
    assert pseudo.view_labels.shape == (len(trainer.target_set), 2)
    keep = pseudo.trained()
    assert trainer.data_loader.dataset.view_labels.tolist() == pseudo.view_labels[keep].tolist()
    # SSG's code: a sample that is an outlier in any view (here: a part only) never reaches a batch
    part_only = part_only_outliers(trainer)
    assert part_only and len(seen) == 8 * 16 and not part_only & set(seen)
    assert (trainer.data_loader.dataset.view_labels >= 0).all()
    model = trainer.unwrapped_model
    assert model.centroids.shape[1] == D
    assert (pseudo.view_labels >= 0).any(0).all()  # both parts found clusters
    assert {"loss_triplet_full", "loss_triplet_upper", "loss_triplet_lower"} <= set(trainer.storage.histories())
    log = epoch_records(tmp_path)["pseudo"][0]
    assert log["view1_num_clusters"] > 0 and log["view2_num_clusters"] > 0
    assert {"view1_mi_cam", "view1_lost_ids", "view2_lost_ids"} <= set(log)  # per-part diagnostics (Fig. 6)
    assert (log["train_samples"], log["train_clusters"]) == (keep.sum(), len(set(pseudo.labels[keep])))


def test_drop_view_outliers_false_keeps_part_outliers_in_training(make_trainer, tmp_path):
    """The old rule (PSEUDO.DROP_VIEW_OUTLIERS False): part outliers stay in the batches (full-body
    losses, embedding triplet, discriminators) and leave only their part's triplet."""
    trainer = make_trainer(tmp_path, *ONE_EPOCH, "PSEUDO.DROP_VIEW_OUTLIERS", "False")
    seen = record_batches(trainer)
    trainer.train()
    assert part_only_outliers(trainer) & set(seen)
    pseudo = hook_of(trainer).pseudo
    assert trainer.data_loader.dataset.view_labels.tolist() == pseudo.view_labels[pseudo.labels >= 0].tolist()


def test_tiny_canu_ssg_epochs_and_resume_restores_view_labels(make_trainer, tmp_path):
    opts = ["MODEL.CANU.ENABLED", "True", "MODEL.CANU.MU", "0.05", "CLUSTERING.PERIOD", "2"]
    full = tmp_path / "full"
    trainer = make_trainer(full, *opts)
    assert len(trainer.discriminators) == 3
    trainer.train()
    assert {"loss_cam_adv", "cam_disc_acc"} <= set(trainer.storage.histories())
    saved = torch.load(full / "model_0000.pth", weights_only=True)["pseudo_labels"]
    assert saved["view_labels"].shape[1] == 2 and saved["classifiers"] == []
    cut = tmp_path / "cut"
    shutil.copytree(full, cut)
    (cut / "last_checkpoint").write_text("model_0000.pth")  # killed during epoch 1
    resumed = make_trainer(cut, *opts)
    resumed.resume_or_load(resume=True)
    assert resumed.start_epoch == 1
    assert torch.equal(torch.from_numpy(hook_of(resumed).pseudo.view_labels), saved["view_labels"])
    resumed.train()  # epoch 1 keeps the epoch-0 clusters (PERIOD 2): the loader gets the restored labels
    keep = torch.from_numpy(PseudoLabels.from_state_dict(saved).trained())
    assert resumed.data_loader.dataset.view_labels.tolist() == saved["view_labels"][keep].tolist()


def test_ssg_reference_clustering_keeps_the_first_eps_and_uses_the_source(make_trainer, tmp_path, monkeypatch):
    """SSG's rule end to end: the source term (features of the source domain, here SynthB), flip
    features, the first clustering's quantile eps kept for the run and across a resume."""
    import canu_plugin.clustering as clustering
    calls = []
    real = clustering.cluster

    def spy(feats, cfg, return_info=False, kept_eps=None, source_features=None, **kw):
        calls.append((kept_eps, None if source_features is None else tuple(source_features.shape)))
        return real(feats, cfg, return_info=return_info, kept_eps=kept_eps, source_features=source_features, **kw)
    monkeypatch.setattr(clustering, "cluster", spy)
    opts = ["CLUSTERING.EPS_RULE", "quantile_once", "CLUSTERING.RHO", "0.03", "CLUSTERING.DIST_NORM", "row_max",
            "CLUSTERING.SOURCE_LAMBDA", "0.1", "PSEUDO.SOURCE_DATASETS", '("SynthB",)', "PSEUDO.FLIP", "True"]
    trainer = make_trainer(tmp_path, *opts)
    trainer.train()
    first = hook_of(trainer).first_eps
    assert len(first) == 3 and all(0 < e < 0.9 for e in first)  # one eps per view
    assert [k for k, _ in calls[:3]] == [None] * 3 and [k for k, _ in calls[3:]] == list(first)  # epoch 1 reuses them
    assert all(s is not None and s[1] == D for _, s in calls)  # each view with its source view
    saved = torch.load(tmp_path / "model_final.pth", weights_only=True)["pseudo_labels"]
    assert tuple(saved["first_eps"]) == first
    resumed = make_trainer(tmp_path, *opts, "SOLVER.MAX_EPOCH", "3")
    resumed.resume_or_load(resume=True)
    assert hook_of(resumed).first_eps == first
