"""data/pseudo_labels.py (target set, PseudoLabels, pseudo-labelled loader) and the trainer's optimizer swap."""
import numpy as np
import pytest
import torch

import canu_plugin  # noqa: F401
from canu_plugin.config import add_canu_config
from canu_plugin.data import pseudo_labels as pseudo
from canu_plugin.engine.trainer import swap_parameter
from canu_plugin.errors import CanuError
from fastreid.config import get_cfg


def _loader(cfg, target, labels, seed, num_views=1):
    labels = np.asarray(labels)
    k = int(labels.max()) + 1
    fake = pseudo.PseudoLabels(labels=labels, centroids=torch.zeros(k, 4), epoch=0)
    return pseudo.pseudo_label_loader(cfg, target, fake, seed, num_views)


def _cfg(**over):
    cfg = add_canu_config(get_cfg())
    cfg.merge_from_list(["INPUT.SIZE_TRAIN", "[32, 16]", "SOLVER.IMS_PER_BATCH", "4",
                         "DATALOADER.NUM_INSTANCE", "2", "DATALOADER.NUM_WORKERS", "0"])
    return cfg


def test_target_set_indexes_cameras_and_ids(tiny_items):
    items = [(p, f"synth_{pid}", f"synth_{cam}") for p, pid, cam in tiny_items]
    target = pseudo.TargetSet(items)
    assert len(target) == 8
    assert target.camids.tolist() == [0, 1] * 4 and target.gt.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    with pytest.raises(CanuError, match="empty"):
        pseudo.TargetSet([])


def test_pseudo_loader_drops_outliers_and_uses_labels(tiny_items):
    target = pseudo.TargetSet(tiny_items)
    labels = np.array([0, 0, 1, 1, -1, -1, 2, 2])
    loader = _loader(_cfg(), target, labels, seed=3)
    assert len(loader.dataset) == 6
    batch = next(iter(loader))
    assert batch["images"].shape == (4, 3, 32, 16)
    paths = np.array(target.paths)
    for path, t in zip(batch["img_paths"], batch["targets"].tolist()):
        assert labels[list(paths).index(path)] == t
    # P x K: 2 identities x 2 images
    assert sorted(np.unique(batch["targets"].numpy(), return_counts=True)[1].tolist()) == [2, 2]


def test_pseudo_loader_refuses_too_few_clusters(tiny_items):
    target = pseudo.TargetSet(tiny_items)
    with pytest.raises(CanuError, match="only 1 clusters"):
        _loader(_cfg(), target, np.array([0] * 8), seed=0)


def test_two_processes_need_the_clusters_of_one_global_batch(tiny_items, monkeypatch):
    """fast-reid's identity sampler draws the global batch (W processes x P/W identities) and drops
    the identities that do not fill one: with fewer it loops forever without yielding. Process 0 of
    2 is simulated: 4 clusters give a batch, 3 are refused (per-process arithmetic asked for 2)."""
    from fastreid.utils import comm
    monkeypatch.setattr(comm, "get_world_size", lambda: 2)
    cfg = _cfg()
    cfg.merge_from_list(["SOLVER.IMS_PER_BATCH", "8", "DATALOADER.NUM_INSTANCE", "2"])
    assert pseudo.required_clusters(cfg) == 4
    target = pseudo.TargetSet(tiny_items)
    for name in pseudo.IDENTITY_SAMPLERS:
        cfg.DATALOADER.SAMPLER_TRAIN = name
        batch = next(iter(_loader(cfg, target, np.array([0, 0, 1, 1, 2, 2, 3, 3]), seed=1)))
        assert batch["targets"].numel() == 4 and len(set(batch["targets"].tolist())) == 2  # this process's half
        with pytest.raises(CanuError, match="only 3 clusters to train on, fewer than the 4"):
            _loader(cfg, target, np.array([0, 0, 1, 1, 2, 2, 2, 2]), seed=1)


def test_swap_parameter_resets_or_moves_state():
    old = torch.nn.Parameter(torch.ones(3, 2))
    other = torch.nn.Parameter(torch.ones(2))
    opt = torch.optim.Adam([{"params": [old]}, {"params": [other]}], lr=0.1)
    (old.sum() + other.sum()).backward()
    opt.step()
    new = torch.nn.Parameter(torch.zeros(5, 2))
    swap_parameter(opt, old, new)
    assert opt.param_groups[0]["params"][0] is new and new not in opt.state and old not in opt.state
    assert other in opt.state
    same = torch.nn.Parameter(torch.zeros(2))
    swap_parameter(opt, other, same, keep_state=True)
    assert same in opt.state and opt.state[same]["exp_avg"].shape == (2,)
    with pytest.raises(ValueError):
        swap_parameter(opt, old, new)


def _batches(loader, n):
    it = iter(loader)
    return [next(it) for _ in range(n)]


def test_balanced_sampler_draws_positives_from_other_cameras(tmp_path):
    """MMT's sampler (BalancedIdentitySampler): each group of K is an anchor then K-1 images of the
    same pseudo-identity from cameras other than the anchor's, whenever the cluster has such images."""
    from PIL import Image
    rng = np.random.default_rng(0)
    items = []  # cluster 0..3 span 3 cameras, cluster 4 and 5 one camera each
    for pid, cams in enumerate([(0, 1, 2)] * 4 + [(0,), (1,)]):
        for cam in cams:
            for k in range(3):
                path = tmp_path / f"{pid:04d}_c{cam + 1}s1_{pid * 100 + cam * 10 + k:06d}_00.jpg"
                Image.fromarray(rng.integers(0, 255, (32, 16, 3), dtype=np.uint8)).save(path)
                items.append((str(path), pid, cam))
    target = pseudo.TargetSet(items)
    labels = np.array([pid for _, pid, _ in items])
    cam_of = {p: c for p, _, c in items}
    for name, cross in (("BalancedIdentitySampler", True), ("NaiveIdentitySampler", False)):
        cfg = _cfg()
        cfg.merge_from_list(["DATALOADER.SAMPLER_TRAIN", name, "DATALOADER.NUM_INSTANCE", "4",
                             "SOLVER.IMS_PER_BATCH", "8"])
        same_cam_positives = 0
        for batch in _batches(_loader(cfg, target, labels, seed=5), 12):
            paths, targets = batch["img_paths"], batch["targets"].tolist()
            for g in range(0, len(paths), 4):
                assert len(set(targets[g:g + 4])) == 1  # one pseudo-identity per group of K
                anchor_cam = cam_of[paths[g]]
                positives = [cam_of[p] for p in paths[g + 1:g + 4]]
                if targets[g] < 4:  # the cluster has other cameras
                    same_cam_positives += sum(c == anchor_cam for c in positives)
                    if cross:
                        assert anchor_cam not in positives
                else:
                    assert set(positives) == {anchor_cam}
        assert (same_cam_positives == 0) == cross  # the naive sampler does draw same-camera positives


def test_unknown_sampler_is_refused_and_training_sampler_means_naive(tiny_items):
    target = pseudo.TargetSet(tiny_items)
    cfg = _cfg()
    cfg.merge_from_list(["DATALOADER.SAMPLER_TRAIN", "ImbalancedDatasetSampler"])
    with pytest.raises(CanuError, match="SAMPLER_TRAIN"):
        _loader(cfg, target, np.array([0, 0, 1, 1, 2, 2, 3, 3]), seed=0)
    assert pseudo.identity_sampler("TrainingSampler") is pseudo.NaiveIdentitySampler
