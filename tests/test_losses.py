"""Loss functions against hand computations / brute force."""
import math

import pytest
import torch
import torch.nn.functional as F

from canu_plugin.modeling import losses as L


def test_oce_matches_eq9_by_hand():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.5]])
    cams = torch.tensor([0, 2])
    p = F.softmax(logits, 1)
    by_hand = -(0.5 * (math.log(p[0, 1]) + math.log(p[0, 2])) + 0.5 * (math.log(p[1, 0]) + math.log(p[1, 1]))) / 2
    assert L.other_camera_equiprobability(logits, cams).item() == pytest.approx(by_hand, rel=1e-6)


def test_oce_minimum_is_uniform_on_other_cameras():
    cams = torch.tensor([0])
    best = torch.tensor([[-30.0, 0.0, 0.0, 0.0]])  # all mass equally on cameras 1..3
    assert L.other_camera_equiprobability(best, cams).item() == pytest.approx(math.log(3), abs=1e-4)
    assert L.other_camera_equiprobability(torch.zeros(1, 4), cams) > L.other_camera_equiprobability(best, cams)
    with pytest.raises(ValueError):
        L.other_camera_equiprobability(torch.zeros(1, 1), cams)


def test_ace_is_cross_entropy_to_uniform():
    logits = torch.randn(5, 4)
    uniform = torch.full((5, 4), 0.25)
    expected = -(uniform * F.log_softmax(logits, 1)).sum(1).mean()
    assert L.all_camera_equiprobability(logits).item() == pytest.approx(expected.item(), rel=1e-6)


def _brute_per_camera_triplet(x, pids, cams, margin):
    terms = []
    for a in range(len(x)):
        same_cam = [j for j in range(len(x)) if cams[j] == cams[a]]
        pos = [j for j in same_cam if pids[j] == pids[a] and j != a]
        neg = [j for j in same_cam if pids[j] != pids[a]]
        if pos and neg:
            dp = max(torch.dist(x[a], x[j]).item() for j in pos)
            dn = min(torch.dist(x[a], x[j]).item() for j in neg)
            terms.append(max(0.0, dp - dn + margin))
    return sum(terms) / len(terms)


def test_per_camera_triplet_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 5, generator=g)
    pids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3] * 2)  # labels are per camera: id 0 in cam 0 != id 0 in cam 1
    cams = torch.tensor([0] * 8 + [1] * 8)
    assert L.per_camera_triplet(x, pids, cams, 0.3).item() == pytest.approx(
        _brute_per_camera_triplet(x, pids, cams, 0.3), rel=1e-5)


def test_per_camera_triplet_ignores_other_cameras():
    x = torch.tensor([[0.0, 0], [0.1, 0], [5.0, 0], [0.0, 0.05]])
    pids = torch.tensor([0, 0, 1, 1])
    cams = torch.tensor([0, 0, 0, 1])  # sample 3 (cam 1) would be a close negative if cameras were mixed
    assert L.per_camera_triplet(x, pids, cams, 0.3).item() == pytest.approx(0.0)
    assert L.per_camera_triplet(x[:1], pids[:1], cams[:1]).item() == 0.0


def test_soft_losses_are_minimal_when_student_equals_teacher():
    logits = torch.randn(6, 4)
    assert L.soft_cross_entropy(logits, logits) <= L.soft_cross_entropy(logits, torch.randn(6, 4)) + 1e-6
    feats = torch.randn(8, 3)
    pids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    same = L.soft_triplet(feats, feats, pids)
    assert same <= L.soft_triplet(feats, torch.randn(8, 3), pids) + 1e-6


def test_all_positive_triplet_is_ssgs_loop():
    """SSG's TripletLoss (use_semi): for each identity group of K consecutive samples, every pair
    (j, j') with j < j' against the hardest negative of j; MarginRankingLoss = mean relu(ap - an + m)."""
    torch.manual_seed(0)
    P, K, margin = 4, 4, 0.5
    x = torch.randn(P * K, 8)
    labels = torch.arange(P).repeat_interleave(K)
    dist = torch.cdist(x, x)
    terms = []
    for i in range(P):
        for j in range(K):
            a = i * K + j
            neg = dist[a][labels != labels[a]].min()
            terms += [torch.relu(dist[a, i * K + p] - neg + margin) for p in range(j + 1, K)]
    assert torch.allclose(L.all_positive_triplet(x, labels, margin), torch.stack(terms).mean())
    assert L.all_positive_triplet(x[:4], labels[:4], margin).item() == 0.0  # no negative
    assert L.all_positive_triplet(x, torch.arange(P * K), margin).item() == 0.0  # no positive pair
