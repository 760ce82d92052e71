"""The sparse k-reciprocal Jaccard distance against the dense reference (research-code semantics)."""
import numpy as np
import pytest
import scipy.sparse as sp

from canu_plugin.clustering import jaccard, minsum
from canu_plugin.clustering.cluster import quantile_eps
from canu_plugin.clustering.knn import knn_search
from canu_plugin.clustering.reference import jaccard_reference, quantile_eps_reference
from canu_plugin.clustering.synth import clustered_features
from canu_plugin.errors import CanuError


def _dense(m):
    """Sparse Jaccard -> dense, absent entries = 1.0."""
    out = np.ones(m.shape, np.float32)
    coo = m.tocoo()
    out[coo.row, coo.col] = coo.data
    return out


@pytest.fixture(scope="module")
def feats():
    return clustered_features(1500, 96, seed=3)[0]


@pytest.fixture(scope="module")
def full(feats):
    return jaccard.jaccard_distance(feats, 30, 6)


@pytest.fixture(scope="module")
def ref(feats):
    return jaccard_reference(feats, 30, 6)


def test_parity_with_dense_reference(full, ref):
    assert sp.isspmatrix_csr(full) and full.dtype == np.float32 and full.has_sorted_indices
    assert np.abs(_dense(full) - ref).max() < 1e-5
    off = full.tocoo()
    off = off.row != off.col
    assert np.all(full.data[off] < 1.0)  # everything stored off the diagonal is < 1
    # every pair the dense matrix puts below 1 (beyond float rounding) is stored
    rows, cols = np.nonzero(ref < 1.0 - 1e-6)
    assert np.all(np.asarray(full[rows, cols]).ravel() < 1.0)
    np.testing.assert_array_equal(np.diff(full.indptr) > 0, True)
    assert np.allclose(full.diagonal(), 0.0, atol=1e-6)
    assert abs(full - full.T).max() == 0  # exactly symmetric


@pytest.mark.parametrize("k1,k2", [(15, 1), (21, 4)])
def test_parity_other_parameters(k1, k2):
    x = clustered_features(600, 48, seed=5)[0]
    assert np.abs(_dense(jaccard.jaccard_distance(x, k1, k2)) - jaccard_reference(x, k1, k2)).max() < 1e-5


def test_half_width_uses_numpy_rounding():
    assert [jaccard.half_width(k) for k in (30, 20, 15, 5, 1)] == [16, 11, 9, 3, 1]


def test_duplicates_keep_explicit_zero_distances():
    x = clustered_features(300, 32, seed=7)[0]
    x = np.concatenate([x, x[:40]])  # 40 exact duplicates: Jaccard distance 0 between twins
    d = jaccard.jaccard_distance(x, 20, 6)
    twins = np.asarray(d[np.arange(40), 300 + np.arange(40)]).ravel()
    assert np.all(twins <= 1e-6)
    rows = np.repeat(np.arange(d.shape[0]), np.diff(d.indptr))
    assert np.count_nonzero((d.data == 0) & (d.indices != rows)) > 0  # stored, not dropped
    assert np.abs(_dense(d) - jaccard_reference(x, 20, 6)).max() < 1e-5


def test_pruning_blocks_and_threads_do_not_change_values(feats, full):
    sims, idx = knn_search(feats, 30)
    pruned = jaccard.jaccard_from_knn(feats, sims, idx, 30, 6, max_dist=0.6, max_pairs=5000, workers=3)
    expect = full.copy()
    rows = np.repeat(np.arange(expect.shape[0]), np.diff(expect.indptr))
    expect.data[(expect.data > 0.6) & (expect.indices != rows)] = 2.0  # mark the ones pruning drops
    keep = expect.data != 2.0
    assert pruned.nnz == int(keep.sum())
    np.testing.assert_array_equal(_dense(pruned), np.where(_dense(expect) == 2.0, 1.0, _dense(expect)))


def test_quantile_eps_exact_from_pruned_matrix(feats, full, ref):
    n = full.shape[0]
    rho = 1.6e-3
    sims, idx = knn_search(feats, 30)
    pruned = jaccard.jaccard_from_knn(feats, sims, idx, 30, 6, keep_smallest=int(np.round(rho * n * (n - 1) / 2)) + 1,
                                      max_pairs=20000)
    assert pruned.nnz < full.nnz / 5
    threaded = jaccard.jaccard_from_knn(feats, sims, idx, 30, 6, keep_smallest=int(np.round(rho * n * (n - 1) / 2)) + 1,
                                        max_pairs=7000, workers=3)
    assert (threaded != pruned).nnz == 0 and threaded.nnz == pruned.nnz  # same cut whatever the blocking
    eps_ref = quantile_eps_reference(ref, rho)
    assert abs(quantile_eps(full, rho) - eps_ref) < 1e-6
    assert abs(quantile_eps(pruned, rho) - eps_ref) < 1e-6


def test_quantile_eps_pads_with_ones_beyond_the_stored_pairs():
    # 4 points; stored strict-upper distances 0.2 and 0.4, the other 4 pairs are 1.0
    dist = minsum.symmetric_from_upper(np.array([0, 1], np.int32), np.array([1, 2], np.int32),
                                       np.array([.2, .4], np.float32), np.zeros(4, np.float32))
    assert quantile_eps(dist, 0.5) == pytest.approx((0.2 + 0.4 + 1.0) / 3)  # round(0.5 * 6) = 3
    assert quantile_eps(dist, 0.2) == pytest.approx(0.2)
    with pytest.raises(CanuError, match="selects no distance"):
        quantile_eps(dist, 0.01)
    with pytest.raises(CanuError, match="rho"):
        quantile_eps(dist, 1.5)


def test_parameter_errors(feats):
    with pytest.raises(CanuError, match="only 20 samples.*K1"):
        jaccard.jaccard_distance(feats[:20], 30, 6)
    with pytest.raises(CanuError, match="k2=8 > k1=5"):
        jaccard.jaccard_distance(feats, 5, 8)
    with pytest.raises(CanuError, match="positive integers"):
        jaccard.jaccard_distance(feats, 0, 1)
