"""Diagnostics against hand-computed values."""
import math

import numpy as np
import pytest

from canu_plugin.evaluation.diagnostics import (camera_mutual_information, cluster_report,
                                                 lost_identities, purity)


def test_mi_of_camera_clusters_is_camera_entropy():
    # clusters == cameras, two equiprobable cameras: MI = H(cam) = ln 2, NMI = 1
    labels = np.array([0, 0, 1, 1, -1])
    cams = np.array([0, 0, 1, 1, 1])
    mi, nmi = camera_mutual_information(labels, cams)
    assert mi == pytest.approx(math.log(2)) and nmi == pytest.approx(1.0)


def test_mi_of_camera_independent_clusters_is_zero():
    labels = np.array([0, 0, 1, 1])
    cams = np.array([0, 1, 0, 1])
    assert camera_mutual_information(labels, cams) == pytest.approx((0.0, 0.0))


def test_purity_and_lost_ids_by_hand():
    gt = np.array([7, 7, 7, 8, 8, 9, 9])
    labels = np.array([0, 0, 1, 1, 1, -1, -1])  # id 9 all outliers -> lost
    # cluster 0: {7,7} majority 2; cluster 1: {7,8,8} majority 2 -> 4/5
    assert purity(labels, gt) == pytest.approx(4 / 5)
    assert lost_identities(labels, gt) == 1
    rep = cluster_report(labels, np.zeros(7, int), gt)
    assert rep["num_clusters"] == 2 and rep["num_outliers"] == 2 and rep["lost_ids"] == 1
    assert rep["num_gt_ids"] == 3 and rep["outlier_ratio"] == pytest.approx(2 / 7)
    assert rep["mi_cam"] == 0.0


def test_perfect_clustering_scores_one():
    gt = np.array([3, 3, 5, 5, 6, 6])
    rep = cluster_report(np.array([1, 1, 0, 0, 2, 2]), np.array([0, 1, 0, 1, 0, 1]), gt)
    assert rep["nmi_gt"] == pytest.approx(1.0) and rep["ari_gt"] == pytest.approx(1.0)
    assert rep["purity"] == 1.0 and rep["lost_ids"] == 0


def test_all_outliers_is_defined():
    rep = cluster_report(np.full(4, -1), np.array([0, 1, 0, 1]), np.array([1, 1, 2, 2]))
    assert rep["num_clusters"] == 0 and rep["purity"] == 0.0 and rep["lost_ids"] == 2
    with pytest.raises(ValueError, match="1-D"):
        cluster_report(np.zeros((2, 2)), np.zeros(4))
