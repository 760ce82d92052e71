"""ACAN samplers: single-camera P x K groups, camera-balanced counts, DDP slicing, determinism."""
import itertools

import numpy as np
import pytest
import torch

import canu_plugin  # noqa: F401
from canu_plugin.data import samplers as S
from fastreid.utils import comm


def _items(seed=0, ids_per_cam=(9, 6, 12), imgs=(1, 6)):
    """(path, label, camid) with per-camera labels; some identities have fewer than K images."""
    rng = np.random.default_rng(seed)
    items, label = [], 0
    for cam, n in enumerate(ids_per_cam):
        for _ in range(n):
            items += [(f"{label}_{j}.jpg", label, cam) for j in range(rng.integers(imgs[0], imgs[1] + 1))]
            label += 1
    return items


def _take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def _world(monkeypatch, size, rank):
    monkeypatch.setattr(comm, "get_world_size", lambda: size)
    monkeypatch.setattr(comm, "get_rank", lambda: rank)


def test_every_group_is_p_identities_of_one_camera():
    items = _items()
    P, K, G = 4, 3, 2
    sampler = S.PerCameraIdentitySampler(items, P, K, groups_per_batch=G, seed=1)
    assert sampler.batch_size == G * P * K
    stream = _take(sampler, 40 * sampler.batch_size)
    cams_seen = set()
    for g in range(0, len(stream), P * K):
        group = [items[i] for i in stream[g:g + P * K]]
        cams = {it[2] for it in group}
        assert len(cams) == 1                       # one camera per group
        cams_seen |= cams
        labels = [it[1] for it in group]
        assert len(set(labels)) == P                # P distinct identities ...
        assert all(labels[s:s + K] == [labels[s]] * K for s in range(0, P * K, K))  # ... K images each
    assert cams_seen == {0, 1, 2}                   # every camera with >= P ids gets groups


def test_identities_with_few_images_are_sampled_with_replacement():
    items = [("a.jpg", 0, 0), ("b.jpg", 1, 0), ("c.jpg", 1, 0)] + [(f"{i}.jpg", 2 + i, 1) for i in range(2)]
    sampler = S.PerCameraIdentitySampler(items, 2, 4, seed=0)
    batch = [items[i] for i in _take(sampler, 8)]
    assert len({it[2] for it in batch}) == 1 and len({it[1] for it in batch}) == 2


def test_camera_balanced_counts():
    items = _items(ids_per_cam=(3, 20, 5))
    camids = [it[2] for it in items]
    sampler = S.CameraBalancedSampler(camids, 7, seed=3)
    assert sampler.batch_size == 21
    stream = _take(sampler, 30 * 21)
    for b in range(0, len(stream), 21):
        counts = np.bincount([camids[i] for i in stream[b:b + 21]], minlength=3)
        assert counts.tolist() == [7, 7, 7]
        for c in range(3):  # no repeat inside a batch when a camera has enough images
            picks = [i for i in stream[b:b + 21] if camids[i] == c]
            if camids.count(c) >= 7:
                assert len(set(picks)) == 7


def test_same_seed_same_stream_and_restartable(monkeypatch):
    items = _items()
    a = S.PerCameraIdentitySampler(items, 4, 2, seed=5)
    assert _take(a, 200) == _take(a, 200)  # a new iter() replays the stream
    assert _take(a, 200) == _take(S.PerCameraIdentitySampler(items, 4, 2, seed=5), 200)
    assert _take(a, 200) != _take(S.PerCameraIdentitySampler(items, 4, 2, seed=6), 200)
    cams = [it[2] for it in items]
    b = S.CameraBalancedSampler(cams, 4, seed=5)
    assert _take(b, 120) == _take(b, 120) != _take(S.CameraBalancedSampler(cams, 4, seed=6), 120)
    monkeypatch.setattr(comm, "shared_random_seed", lambda: 5)  # fast-reid's shared seed by default
    assert _take(S.PerCameraIdentitySampler(items, 4, 2), 200) == _take(a, 200)


def test_ddp_ranks_take_disjoint_slices_of_the_same_global_batch(monkeypatch):
    items = _items()
    cams = [it[2] for it in items]
    P, K, per_cam, n = 4, 2, 6, 25
    _world(monkeypatch, 1, 0)
    full = S.PerCameraIdentitySampler(items, P, K, seed=2)
    global_batches = list(itertools.islice(full._global_batches(), n))
    global_bal = list(itertools.islice(S.CameraBalancedSampler(cams, per_cam, seed=2)._global_batches(), n))
    tri, bal = {}, {}
    for rank in (0, 1):
        _world(monkeypatch, 2, rank)
        t = S.PerCameraIdentitySampler(items, P, K, seed=2)
        b = S.CameraBalancedSampler(cams, per_cam, seed=2)
        assert t.batch_size == P * K // 2 and b.batch_size == per_cam // 2 * 3
        tri[rank], bal[rank] = _take(t, n * t.batch_size), _take(b, n * b.batch_size)
    half = P * K // 2
    for i, batch in enumerate(global_batches):
        r0, r1 = tri[0][i * half:(i + 1) * half], tri[1][i * half:(i + 1) * half]
        assert r0 + r1 == batch                                  # the ranks split the global batch
        for part in (r0, r1):                                    # whole identities, one camera
            labels = [items[j][1] for j in part]
            assert len({items[j][2] for j in part}) == 1 and all(labels.count(x) == K for x in labels)
    for i, per_camera in enumerate(global_bal):
        b0, b1 = bal[0][i * 9:(i + 1) * 9], bal[1][i * 9:(i + 1) * 9]
        assert sorted(b0 + b1) == sorted(sum(per_camera, []))
        assert np.bincount([cams[j] for j in b0], minlength=3).tolist() == [3, 3, 3]


def test_acan_sampler_yields_triplet_part_then_balanced_part():
    items = _items()
    cams = [it[2] for it in items]
    sampler = S.ACANSampler(S.PerCameraIdentitySampler(items, 3, 2, seed=0), S.CameraBalancedSampler(cams, 2, seed=0))
    assert sampler.batch_size == 6 + 6
    batches = list(itertools.islice(iter(torch.utils.data.BatchSampler(sampler, sampler.batch_size, True)), 10))
    for batch in batches:
        parts = [p for _, p in batch]
        assert parts == [S.TRIPLET_PART] * 6 + [S.CAMERA_PART] * 6
        assert len({cams[i] for i, _ in batch[:6]}) == 1
        assert sorted(cams[i] for i, _ in batch[6:]) == [0, 0, 1, 1, 2, 2]


def test_bad_arguments(monkeypatch):
    items = _items()
    with pytest.raises(ValueError, match="no camera has 50 identities"):
        S.PerCameraIdentitySampler(items, 50, 4)
    with pytest.raises(ValueError, match=">= 1"):
        S.PerCameraIdentitySampler(items, 4, 0)
    with pytest.raises(ValueError, match="non-empty"):
        S.CameraBalancedSampler([], 4)
    _world(monkeypatch, 4, 0)
    with pytest.raises(ValueError, match="split evenly over 4 ranks"):
        S.PerCameraIdentitySampler(items, 3, 2, seed=0)
    with pytest.raises(ValueError, match="over 4 ranks"):
        S.CameraBalancedSampler([0, 1], 3, seed=0)
