"""Camera bias of test features as Song, Park and Lee measure it ("Exploring the Camera Bias of Person
Re-identification", ICLR 2025): cluster the features and take the NMI between the clusters and the
cameras (:func:`camera_bias_nmi`); and the retrieval metrics after their test-time remedy, per-camera
feature normalization (:func:`camera_normalized_metrics`).
"""
import logging
from collections import OrderedDict

import numpy as np
from sklearn.metrics import normalized_mutual_info_score

logger = logging.getLogger(__name__)

# One clustering for every run, whatever its own CLUSTERING keys: the pseudo-label clustering's defaults.
NMI_CLUSTERING = dict(method="dbscan", k1=30, k2=6, eps=0.6, eps_rule="fixed", min_samples=4)
NMI_MIN_IMAGES = 2 * NMI_CLUSTERING["k1"]  # fewer test images than this: no measure (warned)


def camera_bias_nmi(features, camids, pids):
    """NMI between the cameras and the clusters of ``features`` (the paper's camera-bias measure), beside the
    NMI between the identities and the same clusters (how much identity the clusters carry).

    The clusters are the k-reciprocal Jaccard + DBSCAN clusters of :data:`NMI_CLUSTERING` (the paper clusters
    with InfoMap); each DBSCAN outlier counts as a cluster of its own, so that every image is measured.

    Args:
        features: (N, D) array or tensor (L2-normalised here); camids, pids: (N,) arrays.
    Returns:
        OrderedDict ``cam_nmi``, ``cam_nmi_ids`` (floats in [0, 1]); empty (with a warning) when N is under
        :data:`NMI_MIN_IMAGES` or there is one camera.
    """
    from canu_plugin.clustering import cluster_features
    cams, ids = np.asarray(camids), np.asarray(pids)
    if len(cams) < NMI_MIN_IMAGES or len(np.unique(cams)) < 2:
        logger.warning(f"cam_nmi skipped: {len(cams)} test images of {len(np.unique(cams))} camera(s) "
                       f"(it needs >= {NMI_MIN_IMAGES} and two cameras)")
        return OrderedDict()
    labels, _ = cluster_features(features, **NMI_CLUSTERING)
    labels = np.where(labels >= 0, labels, labels.max() + 1 + np.arange(len(labels)))  # outliers: singletons
    return OrderedDict(cam_nmi=float(normalized_mutual_info_score(cams, labels)),
                       cam_nmi_ids=float(normalized_mutual_info_score(ids, labels)))


def camera_normalized_metrics(rank, feats, camids):
    """``Rank-1_cn`` and ``mAP_cn``: the retrieval metrics of the features after per-camera normalization.

    Args:
        rank: callable (feats (N, D) tensor) -> fast-reid's result dict (the evaluator's own ranking).
        feats: (N, D) tensor of query + gallery features; camids: (N,) tensor.
    Returns:
        OrderedDict of the two floats (percent).
    """
    from canu_plugin.clustering.camera_norm import camera_normalize
    res = rank(camera_normalize(feats, camids))
    return OrderedDict([("Rank-1_cn", res["Rank-1"]), ("mAP_cn", res["mAP"])])


__all__ = ["NMI_CLUSTERING", "NMI_MIN_IMAGES", "camera_bias_nmi", "camera_normalized_metrics"]
