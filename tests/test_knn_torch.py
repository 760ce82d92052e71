"""The torch k-NN backend (exact, blocked products, optional half-precision first pass), the
approximate faiss-ivf backend, the "auto" choice, and precomputed neighbours in cluster_features."""
import importlib
import logging

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from canu_plugin.clustering import cluster_features, knn
from canu_plugin.clustering.knn_torch import knn_torch, score_error_bound
from canu_plugin.clustering.synth import clustered_features
from canu_plugin.errors import CanuError


def _unit(a):
    a = np.asarray(a, np.float32)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def _reference(x, k):
    """Exact order: float64 products rounded to float32, descending, ties by the smaller id."""
    s = (x.astype(np.float64) @ x.T.astype(np.float64)).astype(np.float32)
    ids = np.broadcast_to(np.arange(len(x)), s.shape)
    order = np.lexsort((ids, -s), axis=1)[:, :k]
    return np.take_along_axis(s, order, 1), order


def _near_ties(n_groups=6, copies=40, dim=48, spread=1e-5, seed=0):
    """Groups of near-copies (cosines 1 - O(spread^2), far below fp16's resolution) plus exact duplicates."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_groups, dim))
    x = np.repeat(centres, copies, axis=0) + spread * rng.standard_normal((n_groups * copies, dim))
    x = np.concatenate([x, rng.standard_normal((200, dim))])
    x[-5:] = x[-150]       # exact duplicates of a random row (after normalising: identical rows)
    x[3] = x[5]            # and a duplicate pair among near-copies
    return _unit(x)


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_equals_the_exact_order_on_ties_and_near_ties(precision):
    x = _near_ties()
    sims, idx = knn_torch(x, 12, precision=precision, chunk=97, device="cpu")
    ref_s, ref_i = _reference(x, 12)
    np.testing.assert_array_equal(idx, ref_i)
    np.testing.assert_array_equal(sims, ref_s)
    assert idx.dtype == np.int64 and sims.dtype == np.float32
    n = len(x)
    np.testing.assert_array_equal(idx[n - 1, :6], [n - 150] + list(range(n - 5, n)))  # ties: smaller id first


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_first_pass_gives_the_fp32_lists_when_candidates_must_widen(precision):
    x = _near_ties(copies=60)
    ref = knn_torch(x, 30, device="cpu")
    for margin in (0, 3, 200):  # 0 and 3: most rows need wider candidate lists (60 near-copies)
        out = knn_torch(x, 30, precision=precision, margin=margin, chunk=50, device="cpu")
        np.testing.assert_array_equal(out[1], ref[1])
        np.testing.assert_array_equal(out[0], ref[0])


def test_error_bound_holds_for_the_fast_scores():
    x = _unit(np.random.default_rng(1).standard_normal((400, 2048)))
    exact = (x.astype(np.float64) @ x.T.astype(np.float64)).astype(np.float32)
    for precision, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16), ("fp32", torch.float32)):
        t = torch.from_numpy(x).to(dtype)
        fast = (t @ t.T).float().numpy()
        err = np.abs(fast - exact).max()
        assert 0 < err <= score_error_bound(2048, precision)
    assert score_error_bound(2048, "fp16") < score_error_bound(2048, "bf16")


def test_parity_with_faiss_cpu_and_query_rows():
    x = clustered_features(1200, 96, seed=3)[0]
    fs, fi = knn.knn_search(x, 30, backend="faiss-cpu")
    ts, ti = knn.knn_search(x, 30, backend="torch", chunk=256)
    np.testing.assert_allclose(ts, fs, atol=2e-6)
    differ = fi != ti  # only where two neighbours are tied to float32 rounding
    assert differ.mean() < 1e-3
    r, c = np.nonzero(differ)
    assert np.all(np.abs(fs[r, c] - ts[r, c]) < 2e-6)
    np.testing.assert_array_equal(ti[:, 0], np.arange(len(x)))
    part = knn.knn_search(x, 30, backend="torch", rows=(100, 357))
    np.testing.assert_array_equal(part[1], ti[100:357])
    np.testing.assert_array_equal(knn.knn_search(x, 30, backend="faiss-cpu", rows=(100, 357))[1], fi[100:357])


@pytest.mark.parametrize("eps_rule", ["fixed", "quantile"])
def test_torch_backend_gives_the_faiss_labels(eps_rule):
    x = clustered_features(1500, 64, seed=11)[0]
    ref = cluster_features(x, eps_rule=eps_rule, backend="faiss-cpu")[0]
    for precision in ("fp32", "fp16"):
        labels, _, info = cluster_features(x, eps_rule=eps_rule, backend="torch", precision=precision,
                                           return_info=True)
        np.testing.assert_array_equal(labels, ref)
        assert info["backend"] == "torch"


def test_precomputed_neighbours_skip_the_search(monkeypatch):
    x = clustered_features(800, 32, seed=5)[0]
    ref = cluster_features(x, k1=20, k2=6)[0]
    table = knn.knn_search(x, 25, backend="faiss-cpu")  # wider than k1: the first k1 columns are used
    cl = importlib.import_module("canu_plugin.clustering.cluster")  # the package attribute is the function
    monkeypatch.setattr(cl, "knn_search", lambda *a, **k: pytest.fail("searched despite knn="))
    labels, _, info = cluster_features(x, k1=20, k2=6, knn=table, return_info=True)
    np.testing.assert_array_equal(labels, ref)
    assert info["backend"] == "precomputed"
    with pytest.raises(CanuError, match="precomputed k-NN tables"):
        cluster_features(x, k1=20, knn=(table[0][:, :10], table[1][:, :10]))
    with pytest.raises(CanuError, match="precomputed k-NN tables"):
        cluster_features(x[:700], k1=20, knn=table)


def test_ivf_is_approximate_and_recall_grows_with_nprobe():
    x = clustered_features(4000, 64, seed=7)[0]
    exact = knn.knn_search(x, 20, backend="faiss-cpu")[1]
    recalls = []
    for nprobe in (8, 32):
        approx = knn.knn_search(x, 20, backend="faiss-ivf", nlist=64, nprobe=nprobe)[1]
        assert approx.min() >= 0 and approx.shape == exact.shape
        np.testing.assert_array_equal(approx[:, 0], np.arange(len(x)))  # each row's own list is probed
        recalls.append(np.mean([len(np.intersect1d(a, b)) / 20 for a, b in zip(approx, exact)]))
    assert 0.5 < recalls[0] < recalls[1] < 1.0 and recalls[1] > 0.9
    full = knn.knn_search(x, 20, backend="faiss-ivf", nlist=64, nprobe=64)[1]  # every list: exact
    np.testing.assert_array_equal(np.sort(full, 1), np.sort(exact, 1))
    lab_e = cluster_features(x, k1=20, backend="faiss-cpu")[0]
    lab_a = cluster_features(x, k1=20, backend="faiss-ivf", ivf_nlist=64, ivf_nprobe=32)[0]
    assert adjusted_rand_score(lab_e, lab_a) > 0.85


def test_ivf_fills_rows_with_too_few_hits():
    x = clustered_features(600, 16, seed=8)[0]
    sims, idx = knn.knn_search(x, 50, backend="faiss-ivf", nlist=15, nprobe=1)  # ~40 per list < 50
    assert idx.min() >= 0 and np.isfinite(sims).all()


def test_auto_order_and_its_log(monkeypatch, caplog):
    monkeypatch.setattr(knn, "_LOGGED", set())
    monkeypatch.setattr(knn, "_faiss_gpus", lambda faiss: 0)
    monkeypatch.setattr(knn, "_torch_has_cuda", lambda: True)
    with caplog.at_level(logging.INFO, logger=knn.__name__):
        assert knn.resolve_backend("auto") == "torch"
    assert "'auto' -> torch (torch sees CUDA, the installed faiss has no GPU support" in caplog.text
    monkeypatch.setattr(knn, "_faiss_gpus", lambda faiss: 1)
    assert knn.resolve_backend("auto") == "faiss-gpu"
    monkeypatch.setattr(knn, "_torch_has_cuda", lambda: False)
    assert knn.resolve_backend("auto") == "faiss-cpu"
    assert knn.resolve_backend("torch") == "torch"


def test_without_faiss_auto_uses_torch(monkeypatch):
    monkeypatch.setattr(knn, "_faiss", lambda required=True: (_ for _ in ()).throw(CanuError("faiss is not installed"))
                        if required else None)
    monkeypatch.setattr(knn, "_torch_has_cuda", lambda: False)
    assert knn.resolve_backend("auto") == "torch"
    with pytest.raises(CanuError, match="faiss is not installed"):
        knn.resolve_backend("faiss-cpu")
    x = _unit(np.random.default_rng(2).standard_normal((300, 16)))
    np.testing.assert_array_equal(knn.knn_search(x, 7)[1], _reference(x, 7)[1])


def test_bad_precision():
    with pytest.raises(CanuError, match="KNN_PRECISION"):
        knn.knn_search(_unit(np.ones((5, 3)) + np.eye(5, 3)), 2, backend="torch", precision="fp8")
    with pytest.raises(CanuError, match="query rows"):
        knn.knn_search(_unit(np.ones((5, 3)) + np.eye(5, 3)), 2, rows=(3, 9))


@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_cuda_gives_the_cpu_lists(precision):
    x = np.concatenate([_near_ties(dim=256), clustered_features(3000, 256, seed=4)[0]])
    cpu = knn_torch(x, 30, device="cpu")
    gpu = knn_torch(x, 30, precision=precision, device="cuda")
    np.testing.assert_array_equal(gpu[1], cpu[1])
    np.testing.assert_array_equal(gpu[0], cpu[0])


@pytest.mark.parametrize("precision,dtype",
                         [("fp16", torch.float16), ("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_measured_row_bounds_hold_and_are_tighter_than_the_worst_case(precision, dtype):
    from canu_plugin.clustering.knn_torch import row_error_bounds
    x = np.concatenate([_unit(np.random.default_rng(1).standard_normal((300, 2048))),
                        clustered_features(300, 2048, seed=5)[0]])
    exact = (x.astype(np.float64) @ x.T.astype(np.float64)).astype(np.float32)
    t = torch.from_numpy(x)
    fx = t if precision == "fp32" else t.to(dtype)
    fast = (fx @ fx.T).float()
    delta, rel = row_error_bounds(t, fx, precision)
    err = (fast - torch.from_numpy(exact)).abs()
    assert bool((err <= delta[:, None] + rel * fast.abs()).all())
    if precision != "fp32":  # the input rounding measured, not its worst case: a third narrower at |f| = 1
        assert float(delta.max()) + rel < 0.7 * score_error_bound(2048, precision)


def test_rescoring_paths_agree_with_float64():
    from canu_plugin.clustering.knn_exact import exact_scores_csr
    x = torch.from_numpy(clustered_features(500, 300, seed=6)[0])
    rng = np.random.default_rng(0)
    rows = torch.arange(0, 500, 7)
    lens = torch.from_numpy(rng.integers(1, 40, len(rows)))
    cols = torch.cat([torch.from_numpy(np.sort(rng.choice(500, int(m), replace=False))) for m in lens])
    rows_of = torch.repeat_interleave(rows, lens)
    ref = (x[rows_of].double() * x[cols].double()).sum(1).float()
    for sampled in (True, False):
        assert torch.equal(exact_scores_csr(x, rows, cols, lens, sampled=sampled), ref)
    import canu_plugin.clustering.knn_exact as kt
    old, kt._RESCORE_ELEMS = kt._RESCORE_ELEMS, 300 * 64  # several column chunks and pair chunks
    try:
        for sampled in (True, False):
            assert torch.equal(exact_scores_csr(x, rows, cols, lens, sampled=sampled), ref)
    finally:
        kt._RESCORE_ELEMS = old


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_cuda_rescoring_path_on_the_cpu_gives_the_exact_lists(monkeypatch, precision):
    """CUDA re-scores with gathered float64 dots and no float64 copy: the same path, run on the CPU."""
    import functools
    import canu_plugin.clustering.knn_rescore as kr
    import canu_plugin.clustering.knn_torch as kt
    monkeypatch.setattr(kr, "exact_scores_csr", functools.partial(kr.exact_scores_csr, sampled=False))
    monkeypatch.setattr(kt, "RESCORE_COPY_BYTES", 0)
    x = _near_ties(copies=60)
    sims, idx = knn_torch(x, 30, precision=precision, chunk=70, device="cpu", margin=3)
    ref_s, ref_i = _reference(x, 30)
    np.testing.assert_array_equal(idx, ref_i)
    np.testing.assert_array_equal(sims, ref_s)
