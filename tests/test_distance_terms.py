"""MMT's / SSG's distance terms (clustering/distance_terms.py): row-max normalisation of the
Jaccard weights, SSG's source-domain term, the eps rules on them, and the quantile_once rule."""
import numpy as np
import pytest
import scipy.sparse as sp
from fastreid.config import get_cfg

from canu_plugin.clustering import cluster, cluster_features, jaccard_distance
from canu_plugin.clustering.distance_terms import (_absent_pair_sums, add_source_term, quantile_eps_with_source,
                                                   source_distance_vector)
from canu_plugin.clustering.inputs import as_unit_features
from canu_plugin.clustering.reference import (cluster_reference, jaccard_reference, quantile_eps_reference,
                                              source_term_reference)
from canu_plugin.clustering.synth import clustered_features
from canu_plugin.config import add_canu_config
from canu_plugin.errors import CanuError


@pytest.fixture(scope="module")
def data():
    x = clustered_features(700, 48, seed=5)[0]
    src = clustered_features(400, 48, seed=6)[0]
    return x, src


def _dense(sparse, absent):
    out = np.asarray(absent, np.float64).copy()
    d = sparse.tocoo()
    out[d.row, d.col] = d.data
    return out


def test_row_max_weights_match_the_dense_reference_and_change_the_distances(data):
    from canu_plugin.clustering.jaccard import jaccard_from_knn
    from canu_plugin.clustering.knn import knn_search
    x = as_unit_features(data[0])
    sims, idx = knn_search(x, 21)
    sparse = jaccard_from_knn(x, sims, idx, 21, 6, dist_norm="row_max")
    ref = jaccard_reference(x, 21, 6, dist_norm="row_max")
    np.testing.assert_allclose(_dense(sparse, np.ones(ref.shape)), ref, atol=2e-6)
    plain = jaccard_reference(x, 21, 6)
    assert np.abs(plain - ref).max() > 1e-3  # the normalisation matters
    with pytest.raises(CanuError, match="DIST_NORM"):
        jaccard_from_knn(x, sims, idx, 21, 6, dist_norm="max")


def test_source_term_equals_the_dense_research_formula(data):
    x, src = (as_unit_features(a) for a in data)
    v = source_distance_vector(x, src)
    d2 = ((x[:, None, :].astype(np.float64) - src[None].astype(np.float64)) ** 2).sum(-1)
    brute = (1 - np.exp(-d2)).min(1)
    np.testing.assert_allclose(v, brute / brute.max(), atol=1e-6)
    jac = jaccard_distance(x, 20, 6)
    mixed = add_source_term(jac, v, 0.1)
    absent = 0.9 + 0.1 * (v[:, None] + v[None, :])
    ref = source_term_reference(jaccard_reference(x, 20, 6), x, src, 0.1)
    np.testing.assert_allclose(_dense(mixed, absent), ref, atol=2e-6)
    assert np.allclose(mixed.diagonal(), 0.2 * v, atol=1e-6)  # the research code's diagonal
    with pytest.raises(CanuError, match="width"):
        source_distance_vector(x, src[:, :10])


@pytest.mark.parametrize("eps_rule", ["fixed", "quantile"])
def test_ssg_clustering_with_source_term_matches_the_dense_pipeline(data, eps_rule):
    x, src = data
    kw = dict(k1=20, k2=6, eps=0.45, eps_rule=eps_rule, dist_norm="row_max")
    labels, _, info = cluster_features(x, source_features=src, source_lambda=0.1, return_info=True, **kw)
    ref_labels, ref_eps = cluster_reference(x, source=src, source_lambda=0.1, **kw)
    np.testing.assert_array_equal(labels, ref_labels)
    assert abs(info["eps"] - ref_eps) < 1e-5
    plain = cluster_features(x, **kw)[0]
    assert not np.array_equal(plain, labels) or eps_rule == "fixed"


def test_quantile_with_source_counts_absent_pairs_exactly():
    """With rho large enough that absent pairs enter the smallest fraction, the eps equals the
    dense computation (the heap over v_i + v_j)."""
    rng = np.random.default_rng(0)
    n = 40
    v = rng.random(n)
    rows, cols = np.triu_indices(n, 1)
    pick = rng.random(len(rows)) < 0.05
    vals = rng.random(int(pick.sum())).astype(np.float32)
    upper = sp.coo_matrix((vals, (rows[pick], cols[pick])), shape=(n, n))
    jac = (upper + upper.T + sp.eye(n, dtype=np.float32) * 0).tocsr()
    jac.setdiag(0.0)
    mixed = add_source_term(jac, v, 0.3)
    dense = _dense(mixed, 0.7 + 0.3 * (v[:, None] + v[None, :]))
    for rho in (0.01, 0.2, 0.6):
        assert abs(quantile_eps_with_source(mixed, v, 0.3, rho) - quantile_eps_reference(dense, rho)) < 1e-9
    got = _absent_pair_sums(v, set(), 5)
    assert np.allclose(got, np.sort((v[:, None] + v[None, :])[np.triu_indices(n, 1)])[:5])


def test_quantile_once_keeps_the_first_eps_and_source_needs_features(data):
    x, src = data
    cfg = add_canu_config(get_cfg())
    cfg.merge_from_list(["CLUSTERING.EPS_RULE", "quantile_once", "CLUSTERING.K1", "20"])
    labels, _, info = cluster(x, cfg, return_info=True)
    assert abs(info["eps"] - cluster_features(x, k1=20, eps_rule="quantile", return_info=True)[2]["eps"]) < 1e-9
    kept, _, again = cluster(x[::-1], cfg, return_info=True, kept_eps=0.3)
    assert again["eps"] == 0.3
    np.testing.assert_array_equal(kept, cluster_features(x[::-1], k1=20, eps=0.3)[0])
    cfg.merge_from_list(["CLUSTERING.SOURCE_LAMBDA", "0.1"])
    with pytest.raises(CanuError, match="SOURCE_DATASETS"):
        cluster(x, cfg)
    with pytest.raises(CanuError, match="SOURCE_LAMBDA"):
        cluster_features(x, k1=20, eps=0.95, source_features=src, source_lambda=0.1)
