"""Per-epoch diagnostics of pseudo-labels (CANU-ReID Fig. 3-6): how much the clusters follow the
cameras, and, when ground truth is known (synthetic data, or real labels used for diagnostics
only), how well they follow the identities.

All functions take 1-D integer arrays of length N; label -1 marks a DBSCAN outlier.
"""
import numpy as np
from sklearn import metrics


def _as_int(a, name):
    a = np.asarray(a)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    return a.astype(np.int64, copy=False)


def camera_mutual_information(labels, camids):
    """Mutual information between pseudo-labels and camera ids, over the clustered samples.

    Args:
        labels: (N,) pseudo-labels, -1 = outlier (ignored).
        camids: (N,) camera ids.
    Returns:
        (mi, nmi): MI in nats and MI normalised to [0, 1] (arithmetic mean of the entropies).
        Both 0.0 when fewer than two samples are clustered.
    """
    labels, camids = _as_int(labels, "labels"), _as_int(camids, "camids")
    keep = labels >= 0
    if keep.sum() < 2:
        return 0.0, 0.0
    mi = metrics.mutual_info_score(camids[keep], labels[keep])
    nmi = metrics.normalized_mutual_info_score(camids[keep], labels[keep])
    return float(mi), float(nmi)


def purity(labels, gt):
    """Fraction of clustered samples whose ground-truth id is their cluster's majority id.

    Args:
        labels: (N,) pseudo-labels, -1 = outlier (ignored).
        gt: (N,) ground-truth ids.
    """
    labels, gt = _as_int(labels, "labels"), _as_int(gt, "gt")
    keep = labels >= 0
    if not keep.any():
        return 0.0
    table = metrics.cluster.contingency_matrix(gt[keep], labels[keep], sparse=True)
    return float(table.max(axis=0).sum() / keep.sum())


def lost_identities(labels, gt):
    """Number of ground-truth ids none of whose samples got a pseudo-label (CANU-ReID Fig. 4, 6).

    Args:
        labels: (N,) pseudo-labels, -1 = outlier.
        gt: (N,) ground-truth ids.
    """
    labels, gt = _as_int(labels, "labels"), _as_int(gt, "gt")
    return int(len(np.unique(gt)) - len(np.unique(gt[labels >= 0])))


def cluster_report(labels, camids, gt=None):
    """Everything the clustering hook logs for one epoch.

    Args:
        labels: (N,) pseudo-labels, -1 = outlier.
        camids: (N,) camera ids.
        gt: optional (N,) ground-truth ids (never used for training).
    Returns:
        dict of floats/ints: num_clusters, num_outliers, outlier_ratio, mi_cam, nmi_cam, and with
        gt: nmi_gt, ari_gt (on the clustered samples), purity, lost_ids, num_gt_ids, gt_nmi_cam (the
        reference: how much camera the true identities carry).
    """
    labels = _as_int(labels, "labels")
    keep = labels >= 0
    mi, nmi = camera_mutual_information(labels, camids)
    out = {
        "num_clusters": int(len(np.unique(labels[keep]))),
        "num_outliers": int((~keep).sum()),
        "outlier_ratio": float((~keep).mean()) if len(labels) else 0.0,
        "mi_cam": mi,
        "nmi_cam": nmi,
    }
    if gt is not None:
        gt = _as_int(gt, "gt")
        clustered = keep.sum() >= 2
        out.update({
            "nmi_gt": float(metrics.normalized_mutual_info_score(gt[keep], labels[keep])) if clustered else 0.0,
            "ari_gt": float(metrics.adjusted_rand_score(gt[keep], labels[keep])) if clustered else 0.0,
            "purity": purity(labels, gt),
            "lost_ids": lost_identities(labels, gt),
            "num_gt_ids": int(len(np.unique(gt))),
            "gt_nmi_cam": camera_mutual_information(gt, camids)[1],  # the true identities' NMI with the cameras
        })
    return out
