"""Candidate selection of the torch k-NN (knn_select): the threshold pass and its top-k fallback
find every column that can be in a row's exact top k, on shuffled and on identity-sorted rows."""
import numpy as np
import pytest
import torch

from canu_plugin.clustering import knn_select
from canu_plugin.clustering.knn_torch import knn_torch, row_error_bounds
from canu_plugin.clustering.synth import clustered_features

_DT = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _fast(x, precision):
    t = torch.from_numpy(x)
    fx = t.to(_DT[precision])
    delta, rel = row_error_bounds(t, fx if precision != "fp32" else t, precision)
    return fx @ fx.T, delta, rel


def _exact_topk(x, k):
    s = (x.astype(np.float64) @ x.T.astype(np.float64)).astype(np.float32)
    order = np.lexsort((np.broadcast_to(np.arange(len(x)), s.shape), -s), axis=1)
    return order[:, :k]


def _as_sets(groups, n_rows):
    out = [None] * n_rows
    for rows, cand in groups:
        for r, c in zip(rows.tolist(), cand.tolist()):
            assert out[r] is None, "a row in two groups"
            out[r] = set(c)
    assert all(s is not None for s in out), "a row without candidates"
    return out


def test_kth_lower_bound_is_a_lower_bound_and_close_on_shuffled_and_sorted_rows():
    g = torch.Generator().manual_seed(0)
    fast = torch.randn(50, 3000, generator=g)
    kth = fast.topk(31, dim=1).values[:, -1]
    bound = knn_select.kth_lower_bound(fast, 31)
    assert (bound <= kth).all()
    assert (bound >= fast.topk(40, dim=1).values[:, -1]).all()  # the top 31 mostly fall in distinct groups
    sorted_rows = fast.sort(dim=1).values  # worst order for contiguous groups: strided ones still spread it
    assert (knn_select.kth_lower_bound(sorted_rows, 31) == kth).all()
    assert (knn_select.kth_lower_bound(fast[:, :40], 31) == fast[:, :40].topk(31, dim=1).values[:, -1]).all()


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("sort_by_id", [False, True])
def test_threshold_candidates_hold_the_exact_top_k(precision, sort_by_id):
    x, ids, _ = clustered_features(1500, 256, seed=2)
    if sort_by_id:
        x = np.ascontiguousarray(x[np.argsort(ids, kind="stable")])
    k = 20
    fast, delta, rel = _fast(x, precision)
    groups = knn_select.threshold_candidates(fast, k, delta, rel)
    assert groups is not None
    cands = _as_sets(groups, len(x))
    top = _exact_topk(x, k)
    assert all(set(top[r].tolist()) <= cands[r] for r in range(len(x)))
    assert np.mean([len(c) for c in cands]) < 4 * k  # a threshold, not the whole row
    ref = _as_sets(knn_select.candidate_groups(fast, k, k, delta, rel), len(x))
    needed = [set(c) for c in ref]
    # the top-k path's lists are the needed set rounded up; the threshold's hold at least the needed set
    need = knn_select.needed_widths(fast.float().sort(dim=1, descending=True).values, k, delta, rel, len(x))[0]
    assert all(len(cands[r]) >= int(need[r]) for r in range(len(x)))
    assert len(needed) == len(cands)


def test_too_many_survivors_fall_back_to_the_top_k_path(monkeypatch):
    x = clustered_features(600, 64, seed=1)[0]
    fast, delta, rel = _fast(x, "bf16")
    assert knn_select.threshold_candidates(fast, 10, delta, rel, max_survivors=5) is None
    ref = knn_torch(x, 10, precision="bf16", device="cpu")
    monkeypatch.setattr(knn_select, "MAX_SURVIVORS", 5)
    calls = []
    real = knn_select.candidate_groups
    monkeypatch.setattr(knn_select, "candidate_groups", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    out = knn_torch(x, 10, precision="bf16", device="cpu", chunk=128)
    assert calls, "the fallback did not run"
    np.testing.assert_array_equal(out[1], ref[1])
    np.testing.assert_array_equal(out[0], ref[0])
    np.testing.assert_array_equal(out[1], _exact_topk(x, 10))


def test_rescoring_order_follows_the_neighbourhoods_and_the_lists_stay_exact():
    from canu_plugin.clustering.knn_rescore import exact_topk, neighbourhood_labels
    from sklearn.metrics import adjusted_rand_score
    x, ids, _ = clustered_features(1200, 128, seed=4)
    k, c = 10, 16
    top = torch.from_numpy(_exact_topk(x, c))
    rows = torch.arange(len(x))
    lab = neighbourhood_labels(len(x), rows, top[:, :8])
    assert adjusted_rand_score(ids, lab.numpy()) > 0.2  # rows of one identity mostly share a label
    assert len(torch.unique(lab)) < len(x) // 4
    cols = top.sort(dim=1).values.reshape(-1)  # each row's 16 exact nearest, ascending ids
    sims, idx = exact_topk(torch.from_numpy(x), rows, cols, torch.full((len(x),), c), top[:, :8], k)
    np.testing.assert_array_equal(idx.numpy(), _exact_topk(x, k))
    exact = (x.astype(np.float64) @ x.T.astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(sims.numpy(), np.take_along_axis(exact, idx.numpy(), 1))
