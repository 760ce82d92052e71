"""Chunked exact metrics against fast-reid's own ``evaluate_rank`` (python path), on the same distances."""
import numpy as np
import pytest
import torch

from canu_plugin.errors import CanuError
from canu_plugin.evaluation import metrics as M
from canu_plugin.evaluation import ranking as R
from fastreid.evaluation.rank import evaluate_rank
from fastreid.utils.compute_dist import build_dist


def _labels(rng, q, g, num_pids, num_cams):
    """Random labels plus the hard cases: a query pid absent from the gallery, and a query whose
    only gallery images of its pid share its camera (both must be skipped)."""
    qp, gp = rng.integers(0, num_pids, q), rng.integers(0, num_pids, g)
    qc, gc = rng.integers(0, num_cams, q), rng.integers(0, num_cams, g)
    qp[0] = num_pids + 5                      # absent from the gallery
    qp[1], qc[1] = num_pids + 6, 0            # present only in the same camera
    gp[:2], gc[:2] = num_pids + 6, 0
    return qp, gp, qc, gc


def _clustered(rng, n, dim, labels, spread):
    """Features near a per-pid centre (so positives rank high, as with a trained model)."""
    centres = rng.standard_normal((int(labels.max()) + 1, dim))
    return torch.tensor(centres[labels] + spread * rng.standard_normal((n, dim)), dtype=torch.float32)


def _fastreid(dist, qp, gp, qc, gc, max_rank=50):
    cmc, ap, inp = evaluate_rank(np.asarray(dist), qp, gp, qc, gc, max_rank=max_rank, use_cython=False)
    return cmc, np.asarray(ap), np.asarray(inp)


def _assert_same(res, ref):
    cmc, ap, inp = ref
    assert res["cmc"].shape == cmc.shape and np.abs(res["cmc"] - cmc).max() <= 1e-6
    assert res["num_valid"] == len(ap)
    np.testing.assert_allclose(res["all_AP"], ap, rtol=0, atol=1e-9)
    np.testing.assert_allclose(res["all_INP"], inp, rtol=0, atol=1e-9)
    assert res["mAP"] == pytest.approx(np.mean(ap), abs=1e-9)
    assert res["mINP"] == pytest.approx(np.mean(inp), abs=1e-9)


@pytest.mark.parametrize("q,g,pids,cams,spread", [(37, 211, 25, 3, None), (120, 900, 60, 6, 0.9),
                                                   (9, 60, 12, 2, 0.5), (64, 300, 40, 4, None)])
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_parity_with_fastreid(q, g, pids, cams, spread, metric):
    rng = np.random.default_rng(q * 7 + g)
    qp, gp, qc, gc = _labels(rng, q, g, pids, cams)
    if spread is None:  # unstructured: most negatives compete with the positives
        qf, gf = torch.randn(q, 16), torch.randn(g, 16)
    else:
        qf, gf = _clustered(rng, q, 16, qp, spread), _clustered(rng, g, 16, gp, spread)
    dist = build_dist(qf, gf, metric)
    res = M.evaluate_dist(dist, qp, gp, qc, gc, chunk=16)
    assert not res["valid"][0] and not res["valid"][1] and res["num_query"] == q
    _assert_same(res, _fastreid(dist, qp, gp, qc, gc))


@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_sparse_and_dense_paths_agree_with_fastreid(fraction, monkeypatch):
    monkeypatch.setattr(R, "SPARSE_MAX_FRACTION", fraction)  # 0: always bucket, 1: always sort
    rng = np.random.default_rng(3)
    qp, gp, qc, gc = _labels(rng, 50, 400, 30, 4)
    qf, gf = _clustered(rng, 50, 12, qp, 0.8), _clustered(rng, 400, 12, gp, 0.8)
    dist = build_dist(qf, gf, "cosine")
    _assert_same(M.evaluate_dist(dist, qp, gp, qc, gc, chunk=13), _fastreid(dist, qp, gp, qc, gc))


@pytest.mark.parametrize("fraction, bin_bits", [(0.0, 9), (1.0, 9), (1.0, 0), (1.0, 2)])
def test_ties_follow_a_stable_sort(fraction, bin_bits, monkeypatch):
    """Integer distances (many ties, -0.0 among them): ours equals fast-reid on the tie-free matrix
    of stable ranks, i.e. fast-reid's python path with a stable argsort; with every item bucketed
    (fraction 0) or only the near ones located, with one bin per row (every item searched) or few."""
    monkeypatch.setattr(R, "SPARSE_MAX_FRACTION", fraction)
    monkeypatch.setattr(R, "ROW_BIN_BITS", bin_bits)
    rng = np.random.default_rng(1)
    qp, gp, qc, gc = _labels(rng, 30, 250, 20, 3)
    dist = rng.integers(0, 5, (30, 250)).astype(np.float32)
    dist[2, :40] = -0.0
    stable_ranks = np.argsort(np.argsort(dist, axis=1, kind="stable"), axis=1).astype(np.float32)
    _assert_same(M.evaluate_dist(dist, qp, gp, qc, gc, chunk=7), _fastreid(stable_ranks, qp, gp, qc, gc))


@pytest.mark.parametrize("bin_bits", [0, 3, 9])
def test_row_bins_place_items_like_a_search(bin_bits, monkeypatch):
    """The bin table places every item where a search among its row's sorted (value, column) keys
    does, on values of every sign and scale (infinities, denormals, equal values, -0.0)."""
    monkeypatch.setattr(R, "ROW_BIN_BITS", bin_bits)
    rng = np.random.default_rng(5)
    pool = np.array([-np.inf, -3e38, -1.0, -1e-40, -0.0, 0.0, 1e-40, 1e-30, 0.5, 0.5000001, 1.0, 7.0, 3e38, np.inf],
                    np.float32)
    num, cols = 6, 40
    values = torch.from_numpy(np.where(rng.random((num, cols)) < 0.5, rng.choice(pool, (num, cols)),
                                       rng.normal(0, 2, (num, cols))).astype(np.float32))
    good = torch.from_numpy(rng.random((num, cols)) < 0.3)
    good[0] = False  # a row without positives
    values[1, good[1]] = torch.tensor([0.5, 0.5000001]).repeat(cols)[:int(good[1].sum())]  # a narrow span
    values[2, good[2]] = 0.25  # a span of one value
    col_bits = max(int(cols - 1).bit_length(), 1)
    pr, pc = good.nonzero(as_tuple=True)
    where = R._RowBins(pr, R.float_order(values[pr, pc]), pc, num, col_bits)
    rows, cols_ = (a.reshape(-1) for a in torch.meshgrid(torch.arange(num), torch.arange(cols), indexing="ij"))
    items = values.reshape(-1)
    keep = rows > 0
    got = where.positions(rows[keep], items[keep], cols_[keep])
    want = torch.searchsorted(where.pos, R._row_keys(rows[keep], R.float_order(items[keep]), cols_[keep], col_bits))
    assert torch.equal(got, want)


def test_float_order_is_the_float_order():
    vals = torch.tensor([3.0, -0.0, 0.0, -1e-30, 1e-30, -2.5, float("inf"), -float("inf"), 1.0, 1.0 + 1e-7])
    codes = M.float_order(vals)
    i, j = torch.meshgrid(torch.arange(len(vals)), torch.arange(len(vals)), indexing="ij")
    assert torch.equal(codes[i] < codes[j], vals[i] < vals[j])
    assert torch.equal(codes[i] == codes[j], vals[i] == vals[j])


def test_chunk_size_and_threads_do_not_change_anything():
    rng = np.random.default_rng(5)
    qp, gp, qc, gc = _labels(rng, 45, 230, 30, 5)
    dist = build_dist(_clustered(rng, 45, 8, qp, 1.0), _clustered(rng, 230, 8, gp, 1.0), "euclidean")
    threads = torch.get_num_threads()
    runs = [M.evaluate_dist(torch.from_numpy(dist), qp, gp, qc, gc, chunk=c, max_rank=20, threads=t)
            for c, t in ((1, 1), (6, 2), (45, 0), (1000, 1))]
    assert torch.get_num_threads() == threads  # the ranking's thread setting is restored
    for r in runs[1:]:
        assert np.array_equal(r["cmc"], runs[0]["cmc"]) and np.array_equal(r["all_AP"], runs[0]["all_AP"])
        assert np.array_equal(r["all_INP"], runs[0]["all_INP"]) and np.array_equal(r["valid"], runs[0]["valid"])
    assert runs[0]["cmc"].shape == (20,)


def test_hand_computed_example():
    # one query (pid 1, cam 0); gallery sorted by distance: neg, pos, junk (pid 1 cam 0), neg, pos
    dist = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]], np.float32)
    res = M.evaluate_dist(dist, [1], [2, 1, 1, 3, 1], [0], [1, 1, 0, 1, 2], max_rank=4)
    # valid order: neg, pos, neg, pos -> positives at ranks 1 and 3: AP = (1/2 + 2/4) / 2, INP = 2/4
    assert res["mAP"] == pytest.approx(0.5) and res["mINP"] == pytest.approx(0.5)
    assert res["cmc"].tolist() == [0.0, 1.0, 1.0, 1.0] and res["first_rank"].tolist() == [1]


def test_max_rank_is_capped_by_gallery_size_and_labels_may_be_strings():
    res = M.evaluate_dist(np.array([[0.3, 0.1, 0.2]]), ["a"], ["a", "b", "a"], ["c1"], ["c2", "c1", "c1"])
    assert res["cmc"].tolist() == [0.0, 1.0, 1.0]  # rank 1 is "b", then the other-camera "a"
    assert res["all_AP"].tolist() == [0.5]


def test_bad_input_is_a_clear_error():
    qp, gp, qc, gc = np.arange(4), np.arange(10) % 4, np.zeros(4), np.ones(10)
    dist = np.random.default_rng(0).random((4, 10)).astype(np.float32)
    with pytest.raises(CanuError, match="0 queries.*empty"):
        M.evaluate_dist(dist[:0], qp[:0], gp, qc[:0], gc)
    with pytest.raises(CanuError, match="0 gallery images.*empty"):
        M.evaluate_dist(dist[:, :0], qp, gp[:0], qc, gc[:0])
    with pytest.raises(CanuError, match=r"shape \(4, 9\)"):
        M.evaluate_dist(dist[:, :9], qp, gp, qc, gc)
    with pytest.raises(CanuError, match="q_camids has shape"):
        M.evaluate_dist(dist, qp, gp, qc[:2], gc)
    with pytest.raises(CanuError, match="chunk=0"):
        M.evaluate_dist(dist, qp, gp, qc, gc, chunk=0)
    nan = dist.copy()
    nan[2, 5] = np.nan
    with pytest.raises(CanuError, match="NaN distance for query 2"):
        M.evaluate_dist(nan, qp, gp, qc, gc, chunk=3)
    with pytest.raises(CanuError, match="block for queries 0:4 has shape"):
        M.rank_metrics(lambda s, e: torch.zeros(e - s, 3), qp, gp, qc, gc)
    if not torch.cuda.is_available():
        with pytest.raises(CanuError, match="no CUDA device.*TEST.CANU.DEVICE"):
            M.evaluate_dist(dist, qp, gp, qc, gc, device="cuda")


def test_no_valid_query_is_a_clear_error():
    # pids absent from the gallery, or present only in the query's own camera
    with pytest.raises(CanuError, match="none of the 3 queries"):
        M.evaluate_dist(np.ones((3, 6)), [7, 8, 9], [1, 1, 2, 2, 9, 9], [0, 0, 0], [0, 1, 0, 1, 0, 0])


@pytest.mark.cuda
def test_cuda_gives_the_cpu_numbers():
    rng = np.random.default_rng(9)
    qp, gp, qc, gc = _labels(rng, 80, 700, 50, 6)
    dist = build_dist(_clustered(rng, 80, 32, qp, 0.9), _clustered(rng, 700, 32, gp, 0.9), "cosine")
    for fraction in (0.0, 1.0):
        R.SPARSE_MAX_FRACTION, old = fraction, R.SPARSE_MAX_FRACTION
        try:
            _assert_same(M.evaluate_dist(torch.from_numpy(dist).cuda(), qp, gp, qc, gc, device="cuda"),
                         _fastreid(dist, qp, gp, qc, gc))
        finally:
            R.SPARSE_MAX_FRACTION = old
