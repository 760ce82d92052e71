"""cluster() / cluster_features(): DBSCAN and k-means pseudo-labels, centroids, bad input."""
import numpy as np
import pytest
from fastreid.config import get_cfg
from sklearn.metrics import adjusted_rand_score

from canu_plugin.clustering import cluster, cluster_centroids, cluster_features, dbscan_precomputed, jaccard_distance
from canu_plugin.clustering.reference import cluster_reference, dbscan_reference, jaccard_reference
from canu_plugin.clustering.synth import clustered_features
from canu_plugin.config import add_canu_config
from canu_plugin.errors import CanuError


@pytest.fixture(scope="module")
def data():
    return clustered_features(1500, 64, seed=11)


def _check_labels(labels, centroids, x):
    assert labels.dtype == np.int64 and labels.shape == (len(x),)
    k = int(labels.max()) + 1
    assert set(np.unique(labels[labels >= 0])) == set(range(k))  # 0..K-1, contiguous
    assert centroids.dtype == np.float32 and centroids.shape == (k, x.shape[1])


@pytest.mark.parametrize("eps_rule", ["fixed", "quantile"])
def test_same_labels_as_dense_reference(data, eps_rule):
    x, ids, _ = data
    labels, centroids, info = cluster_features(x, eps_rule=eps_rule, return_info=True)
    ref_labels, ref_eps = cluster_reference(x, eps_rule=eps_rule)
    np.testing.assert_array_equal(labels, ref_labels)
    assert abs(info["eps"] - ref_eps) < 1e-6
    _check_labels(labels, centroids, x)
    assert info["num_clusters"] > 20 and (eps_rule == "quantile" or info["num_outliers"] < len(x) // 2)
    keep = labels >= 0
    assert adjusted_rand_score(ids[keep], labels[keep]) > 0.8  # real structure, not noise


def test_dbscan_on_duplicates_matches_dense():
    x = clustered_features(300, 32, seed=2)[0]
    x = np.concatenate([x, x[:60], x[:10]])  # explicit zero distances must count as neighbours
    d = jaccard_distance(x, 20, 6)
    for eps, ms in [(0.5, 4), (0.3, 3), (0.05, 2)]:
        np.testing.assert_array_equal(dbscan_precomputed(d, eps, ms),
                                      dbscan_reference(jaccard_reference(x, 20, 6), eps, ms))


def test_centroids_are_cluster_means(data):
    x = data[0]
    labels, centroids = cluster_features(x)
    for k in range(len(centroids)):
        np.testing.assert_allclose(centroids[k], x[labels == k].mean(axis=0), atol=1e-6)
    _, unit = cluster_features(x, normalize_centroids=True)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(unit, centroids / np.linalg.norm(centroids, axis=1, keepdims=True), atol=1e-6)
    np.testing.assert_allclose(cluster_centroids(x, np.full(len(x), -1)), np.zeros((0, x.shape[1])))


def test_entry_point_reads_the_config(data):
    x = data[0]
    cfg = add_canu_config(get_cfg())
    cfg.CLUSTERING.EPS = 0.5
    cfg.CLUSTERING.MIN_SAMPLES = 3
    labels, centroids = cluster(x, cfg)
    np.testing.assert_array_equal(labels, cluster_features(x, eps=0.5, min_samples=3)[0])
    cfg.CLUSTERING.METHOD = "kmeans"
    cfg.CLUSTERING.NUM_CLUSTERS = 40
    labels, centroids = cluster(x, cfg)
    _check_labels(labels, centroids, x)
    assert labels.min() == 0 and len(centroids) <= 40


def test_kmeans_labels_and_centroids():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((8, 32))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    truth = np.repeat(np.arange(8), 50)
    x = (centres[truth] + 0.1 * rng.standard_normal((400, 32))).astype(np.float32)
    labels, centroids = cluster_features(x, method="kmeans", num_clusters=8, kmeans_iters=30, seed=1)
    _check_labels(labels, centroids, x)
    assert (labels >= 0).all() and adjusted_rand_score(truth, labels) > 0.6  # random init: local optima
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    for k in range(len(centroids)):
        np.testing.assert_allclose(centroids[k], unit[labels == k].mean(axis=0), atol=1e-6)
    nearest = np.argmin(((unit[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (nearest == labels).mean() > 0.99  # converged Lloyd: points sit with their nearest mean
    np.testing.assert_array_equal(cluster_features(x, method="kmeans", num_clusters=8, kmeans_iters=30, seed=1)[0],
                                  labels)  # deterministic for a seed
    with pytest.raises(CanuError, match="NUM_CLUSTERS"):
        cluster_features(x, method="kmeans", num_clusters=401)


def test_all_outliers_gives_zero_clusters(data):
    x = data[0]
    labels, centroids = cluster_features(x[:200], min_samples=500)
    assert (labels == -1).all() and labels.dtype == np.int64
    assert centroids.shape == (0, x.shape[1]) and centroids.dtype == np.float32


def test_single_cluster():
    rng = np.random.default_rng(1)
    x = (np.ones((60, 32)) + 0.05 * rng.standard_normal((60, 32))).astype(np.float32)
    labels, centroids = cluster_features(x, k1=30)
    assert (labels == 0).all() and centroids.shape == (1, 32)
    np.testing.assert_allclose(centroids[0], (x / np.linalg.norm(x, axis=1, keepdims=True)).mean(0), atol=1e-6)


def test_dtypes_scaling_and_tensors_give_the_same_labels(data):
    torch = pytest.importorskip("torch")
    x = data[0][:600]
    labels = cluster_features(x)[0]
    np.testing.assert_array_equal(cluster_features(x.astype(np.float64))[0], labels)
    scaled = x * np.random.default_rng(0).uniform(0.5, 3.0, (len(x), 1)).astype(np.float32)
    np.testing.assert_array_equal(cluster_features(scaled)[0], labels)  # rows are re-normalised
    np.testing.assert_array_equal(cluster_features(torch.from_numpy(x))[0], labels)
    half, _ = cluster_features(x.astype(np.float16))  # converted to float32; values are rounded
    assert half.shape == labels.shape and adjusted_rand_score(labels, half) > 0.9


def test_bad_input_is_a_clear_error(data):
    x = data[0][:300]
    with pytest.raises(CanuError, match="only 20 samples"):
        cluster_features(x[:20])
    bad = x.copy()
    bad[5, 1] = np.nan
    with pytest.raises(CanuError, match="NaN or inf"):
        cluster_features(bad)
    with pytest.raises(CanuError, match="2-D"):
        cluster_features(x[0])
    for kwargs, msg in [({"eps": 1.0}, "eps=1.0 must be in"), ({"eps": 0.0}, "must be in"),
                        ({"method": "optics"}, "unknown clustering method"),
                        ({"eps_rule": "knee"}, "unknown eps rule"), ({"min_samples": 0}, "min_samples"),
                        ({"backend": "gpu"}, "unknown k-NN backend")]:
        with pytest.raises(CanuError, match=msg):
            cluster_features(x, **kwargs)
