"""Camera normalization (Song et al., ICLR 2025): the function, the single-camera rule, and the label generator
clustering what they give while the centroids stay the model's own features."""
import numpy as np
import pytest
import torch

import canu_plugin.clustering as clustering
from canu_plugin.clustering.camera_norm import STD_FLOOR, camera_normalize, discard_single_camera
from canu_plugin.clustering.inputs import as_unit_features
from canu_plugin.engine.label_generator import LabelGenerator
from canu_plugin.errors import CanuError
from conftest import FAST_CLUSTERING

QUICK = "configs/synthetic/quick_pseudo.yml"


def test_each_camera_gets_zero_mean_and_unit_variance_per_dimension():
    rng = np.random.default_rng(0)
    cams = rng.integers(0, 3, 300)
    feats = rng.standard_normal((300, 8)) * (1 + cams[:, None]) + 5.0 * cams[:, None]  # per-camera scale and offset
    feats[:, 3] = 2.0  # a constant dimension: centred, not divided by ~0
    out = camera_normalize(feats, cams)
    assert out.dtype == np.float32 and out.shape == feats.shape
    for c in range(3):
        part = out[cams == c]
        np.testing.assert_allclose(part.mean(0), 0, atol=1e-5)
        np.testing.assert_allclose(np.delete(part.std(0), 3), 1, atol=1e-4)
        assert np.all(part[:, 3] == 0)
    as_tensor = camera_normalize(torch.tensor(feats, dtype=torch.float32), torch.tensor(cams))
    assert isinstance(as_tensor, torch.Tensor) and np.allclose(as_tensor.numpy(), out, atol=1e-5)
    one = camera_normalize(np.ones((1, 4)) * 3, [7])  # a one-image camera: zero
    assert np.all(one == 0) and STD_FLOOR > 0
    with pytest.raises(CanuError, match="one camid per feature row"):
        camera_normalize(feats, cams[:-1])


def test_single_camera_clusters_become_outliers_and_the_rest_is_renumbered():
    labels = np.array([0, 0, 1, 1, 2, 2, 2, -1, 3, 3])
    cams = np.array([0, 1, 2, 2, 0, 0, 1, 1, 3, 3])
    out, discarded = discard_single_camera(labels, cams)
    assert discarded == 2  # clusters 1 and 3 saw one camera each
    assert out.tolist() == [0, 0, -1, -1, 1, 1, 1, -1, -1, -1]
    assert discard_single_camera(np.full(3, -1), [0, 1, 2])[0].tolist() == [-1, -1, -1]


def _spy(monkeypatch):
    """Record the features every clustering call receives."""
    seen, real = [], clustering.cluster

    def cluster(features, cfg, **kw):
        seen.append(np.asarray(features, np.float32).copy())
        return real(features, cfg, **kw)
    monkeypatch.setattr(clustering, "cluster", cluster)
    return seen


def _generate(tiny_trainer, tmp_path, *opts):
    trainer = tiny_trainer(QUICK, tmp_path, "DATASETS.NAMES", '("SynthB",)', "DATASETS.TESTS", '("SynthB",)',
                           *FAST_CLUSTERING, "CLUSTERING.EPS", "0.7", "SEED", "0", *opts)
    module = trainer.unwrapped_model
    from canu_plugin.engine.features import extract_features
    feats = extract_features(module, trainer.target_set.items(), trainer.cfg, normalize=False,
                             forward=module.cluster_forward)
    view = np.asarray(module.cluster_views(feats)[0], np.float32)  # the model's unit features
    return trainer, LabelGenerator(trainer.cfg, trainer.target_set)(module, 0), view


def test_the_clustering_sees_normalised_features_and_the_centroids_stay_the_models(tiny_trainer, tmp_path,
                                                                                   monkeypatch):
    seen = _spy(monkeypatch)
    trainer, pseudo, feats = _generate(tiny_trainer, tmp_path, "CLUSTERING.CAMERA_NORM", "True")
    cams = trainer.target_set.camids
    clustered = seen[-1]
    for c in np.unique(cams):
        np.testing.assert_allclose(clustered[cams == c].mean(0), 0, atol=1e-4)
        varies = feats[cams == c].std(0) > 1e-5  # a dimension constant within a camera is centred, not scaled
        np.testing.assert_allclose(clustered[cams == c].std(0)[varies], 1, atol=1e-3)
        assert varies.mean() > 0.5
    np.testing.assert_allclose(clustered, camera_normalize(feats, cams), atol=1e-5)
    assert pseudo.num_clusters > 1
    unit = np.asarray(as_unit_features(feats))  # the centroids: the model's unit features, averaged per cluster
    labels = np.asarray(pseudo.labels)
    expected = np.stack([unit[labels == k].mean(0) for k in range(pseudo.num_clusters)])
    np.testing.assert_allclose(pseudo.centroids.numpy(), expected, atol=1e-5)


def test_off_the_clustering_sees_the_models_features_unchanged(tiny_trainer, tmp_path, monkeypatch):
    seen = _spy(monkeypatch)
    trainer, pseudo, feats = _generate(tiny_trainer, tmp_path)
    assert np.array_equal(seen[-1], feats)  # bit for bit: no normalization on the way
    labels, centroids = clustering.cluster(feats, trainer.cfg)
    assert np.array_equal(pseudo.labels, labels) and torch.equal(pseudo.centroids, torch.as_tensor(centroids))


def test_discarding_leaves_only_clusters_seen_by_two_cameras(tiny_trainer, tmp_path):
    trainer, pseudo, _ = _generate(tiny_trainer, tmp_path, "CLUSTERING.CAMERA_NORM", "True",
                                   "CLUSTERING.DISCARD_SINGLE_CAMERA", "True")
    cams, labels = trainer.target_set.camids, np.asarray(pseudo.labels)
    kept = np.unique(labels[labels >= 0])
    assert kept.tolist() == list(range(pseudo.num_clusters))  # contiguous
    assert all(len(np.unique(cams[labels == k])) >= 2 for k in kept)
    assert len(pseudo.centroids) == pseudo.num_clusters and "clustering_discarded" in pseudo.info
