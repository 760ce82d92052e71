"""The numbers the benchmark reports, each a function of one run's record (``runner.collect``)."""
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Metric:
    """One reported number: its column header, how to read it from a record, decimals, legend."""
    header: str
    read: Callable
    decimals: int
    legend: str


def _final(key, scale=1.0):
    return lambda r: None if r["final"].get(key) is None else r["final"][key] * scale


def _last(key, scale=1.0):
    return lambda r: r["pseudo"][-1].get(key) * scale if r["pseudo"] and key in r["pseudo"][-1] else None


def _over_epochs(key):
    """Mean over the clusterings after the first (the first one clusters the same source model for
    every method started from it, so it carries no difference between them)."""
    def read(r):
        values = [p[key] for p in r["pseudo"] if p.get("epoch", 0) >= 1 and key in p]
        return float(np.mean(values)) if values else None
    return read


def _bias_ratio_epochs(r):
    """NMI(pseudo, cam) / NMI(true ids, cam) averaged over the clusterings after the first: the pseudo-labels'
    camera information relative to the identities' own (1: no more than the true labels carry)."""
    values = [p["nmi_cam"] / p["gt_nmi_cam"] for p in r["pseudo"]
              if p.get("epoch", 0) >= 1 and "nmi_cam" in p and p.get("gt_nmi_cam", 0) > 0]
    return float(np.mean(values)) if values else None


def _mean_epochs(key):
    def read(r):
        values = [e[key] for e in r["epochs"] if e.get(key) is not None]
        return float(np.mean(values)) if values else None
    return read


def _clustering_s(r):
    values = [p.get("extract_s", 0.0) + p.get("cluster_s", 0.0) for p in r["pseudo"]]
    return float(np.mean(values)) if values else None


def _disc_acc(r):
    values = [e["disc_acc"] for e in r["epochs"] if "disc_acc" in e]
    return values[-1] if values else None


METRICS = {
    "mAP": Metric("mAP", _final("mAP"), 1, "mean average precision on the target test set (%)"),
    "R1": Metric("R1", _final("Rank-1"), 1, "rank-1 accuracy (%)"),
    "mINP": Metric("mINP", _final("mINP"), 1, "mean inverse negative penalty (%)"),
    "cam_probe": Metric("cam probe %", _final("cam_probe"), 1,
                        "held-out accuracy of a linear camera classifier on the final test features, held out "
                        "by identity (%)"),
    "mAP_cn": Metric("mAP cam-norm", _final("mAP_cn"), 1,
                     "mAP of the same final model after test-time per-camera feature normalization (each camera's "
                     "mean / std over query + gallery; no training)"),
    "cam_nmi": Metric("NMI(test clusters, cam)", _final("cam_nmi"), 3,
                      "camera bias of the final test features: NMI between the cameras and the features' DBSCAN "
                      "clusters (Song et al.'s measure; lower: less camera bias)"),
    "d_inter": Metric("d_inter (pooled)", _final("d_inter_pooled"), 3,
                      "ACAN's inter-camera distance of the unit pooled backbone features (the same kind of feature "
                      "for every method)"),
    "disc_acc": Metric("D acc", _disc_acc, 2, "last epoch's mean camera accuracy of the discriminator(s)"),
    "nmi_cam": Metric("NMI(pseudo, cam)", _last("nmi_cam"), 3,
                      "normalised mutual information between the last pseudo-labels and the cameras"),
    "nmi_cam_epochs": Metric("NMI(pseudo, cam) ep>=1", _over_epochs("nmi_cam"), 3,
                             "the same, averaged over the clusterings after the first"),
    "nmi_ratio_epochs": Metric("NMI ratio ep>=1", _bias_ratio_epochs, 3,
                               "NMI(pseudo, cam) / NMI(true ids, cam), averaged over the clusterings after the first"),
    "nmi_gt": Metric("NMI(pseudo, id)", _last("nmi_gt"), 3,
                     "NMI between the last pseudo-labels and the true identities (clustered images)"),
    "ari_gt": Metric("ARI", _last("ari_gt"), 3, "adjusted Rand index against the true identities"),
    "purity": Metric("purity", _last("purity"), 3, "share of clustered images in their cluster's majority identity"),
    "clusters": Metric("clusters", _last("num_clusters"), 0, "clusters of the last clustering"),
    "outliers": Metric("outliers %", _last("outlier_ratio", 100.0), 1, "images left out as DBSCAN outliers (%)"),
    "lost_ids": Metric("lost ids", _last("lost_ids"), 1, "target identities in no cluster, last clustering"),
    "lost_ids_epochs": Metric("lost ids ep>=1", _over_epochs("lost_ids"), 1,
                              "the same, averaged over the clusterings after the first"),
    "train_s": Metric("train s/epoch", _mean_epochs("train_s"), 1, "training steps per epoch (s)"),
    "cluster_s": Metric("clustering s/epoch", _clustering_s, 1, "feature extraction + clustering per epoch (s)"),
}

RETRIEVAL = ("mAP", "R1", "mINP", "mAP_cn", "cam_probe", "cam_nmi", "d_inter", "disc_acc", "train_s", "cluster_s")
PSEUDO_QUALITY = ("nmi_cam", "nmi_cam_epochs", "nmi_ratio_epochs", "nmi_gt", "ari_gt", "purity", "clusters", "outliers",
                  "lost_ids", "lost_ids_epochs")
DIFFERENCES = ("mAP", "nmi_cam_epochs", "lost_ids_epochs", "d_inter")

__all__ = ["Metric", "METRICS", "RETRIEVAL", "PSEUDO_QUALITY", "DIFFERENCES"]
