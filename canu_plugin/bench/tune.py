"""Choose the clustering parameters on the labelled *source* domain, never on the target's labels.

A source model's features of the source domain's test identities (query + gallery, distractors
left out: identities the model never trained on, as the target's are) are clustered with every
combination of the sweep, and each clustering is scored against the source's ground truth:
ARI over all images with every outlier its own cluster (``ari_all``: splitting a person costs as
much as merging two), plus NMI / purity on the clustered images, the number of clusters and the
outlier rate. The best ``ari_all`` is the setting to use on the target.
"""
import itertools

import numpy as np
from sklearn import metrics

from canu_plugin.clustering import cluster_features
from canu_plugin.data.labels import index_labels


def ari_all(labels, gt):
    """ARI of (N,) pseudo-labels against (N,) ground truth, each outlier (-1) a cluster of its own."""
    labels = np.asarray(labels)
    singles = np.where(labels >= 0, labels, labels.max() + 1 + np.arange(len(labels)))
    return float(metrics.adjusted_rand_score(gt, singles))


def score(labels, gt):
    """The scores of one clustering: ari_all, nmi, purity (clustered images), clusters, outliers (%)."""
    from canu_plugin.evaluation.diagnostics import cluster_report
    report = cluster_report(labels, np.zeros(len(labels), np.int64), gt)
    return {"ari_all": ari_all(labels, gt), "nmi": report["nmi_gt"], "purity": report["purity"],
            "clusters": report["num_clusters"], "outliers_pct": 100.0 * report["outlier_ratio"],
            "ids": report["num_gt_ids"]}


def sweep(features, gt, grid, base=None):
    """Cluster ``features`` with every combination of ``grid`` and score each against ``gt``.

    Args:
        features: (N, D) array; gt: (N,) ground-truth ids (any labels);
        grid: {cluster_features argument: list of values}; base: fixed arguments.
    Returns:
        list of dicts (the arguments and :func:`score`), best ``ari_all`` first.
    """
    gt = index_labels(list(gt))[0]
    names = sorted(grid)
    rows = []
    for values in itertools.product(*(grid[n] for n in names)):
        args = {**(base or {}), **dict(zip(names, values))}
        labels, _, info = cluster_features(features, return_info=True, **args)
        rows.append({**dict(zip(names, values)), "eps_used": round(float(info.get("eps", np.nan)), 4),
                     **score(labels, gt)})
    return sorted(rows, key=lambda r: -r["ari_all"])


def markdown(rows, top=10):
    """The ``top`` rows as a GitHub markdown table."""
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows[:top]:
        lines.append("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in r.values()) + " |")
    return "\n".join(lines)


__all__ = ["ari_all", "score", "sweep", "markdown"]
