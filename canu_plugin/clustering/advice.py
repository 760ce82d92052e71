"""What to change when a clustering gives too few clusters for a P x K batch.

Two ways to fail, with opposite fixes:

* **outliers**: most samples are DBSCAN outliers (the neighbourhoods are too tight): a larger
  radius (``CLUSTERING.EPS`` under ``EPS_RULE "fixed"``, ``CLUSTERING.RHO`` under the quantile rules,
  whose eps is the mean of the smallest RHO-fraction of the Jaccard distances) or a smaller
  ``CLUSTERING.MIN_SAMPLES``;
* **merged**: few outliers but the samples chained into a few large clusters: a smaller radius (EPS /
  RHO), or fewer k-reciprocal neighbours (``CLUSTERING.K1``), which links fewer pairs.

Under ``EPS_RULE "quantile_once"`` (every MMT and SSG config) the first clustering's eps comes
from RHO and is kept for the run: EPS is never read, and a later clustering reuses that eps.
"""
import numpy as np

MOSTLY_OUTLIERS = 0.5  # outlier fraction above which the failure is "outliers", else "merged"


def failure_mode(labels):
    """``"outliers"`` or ``"merged"`` for (N,) labels (-1 = outlier), see the module docstring."""
    labels = np.asarray(labels)
    return "outliers" if len(labels) == 0 or (labels < 0).mean() >= MOSTLY_OUTLIERS else "merged"


def _radius_key(c, eps, first):
    """(key, its value, a note on where the eps came from) of the knob that sets the DBSCAN radius."""
    used = "" if eps is None else f" (this one: {eps:.4f})"
    if c.EPS_RULE == "fixed":
        return "CLUSTERING.EPS", c.EPS, ""
    if c.EPS_RULE == "quantile_once" and not first:
        return "CLUSTERING.RHO", c.RHO, (f" EPS_RULE quantile_once keeps the first clustering's eps, which RHO "
                                         f"sets{used}: change RHO in a new run, or use EPS_RULE quantile to "
                                         "recompute it every clustering; CLUSTERING.EPS is not used.")
    return "CLUSTERING.RHO", c.RHO, (f" Under EPS_RULE {c.EPS_RULE} eps is the mean of the smallest RHO-fraction "
                                     f"of the Jaccard distances{used}; CLUSTERING.EPS is not used.")


def too_few_clusters_advice(c, labels, eps=None, first=True):
    """The fix to print when a clustering gave too few clusters.

    Args:
        c: ``cfg.CLUSTERING``; labels: (N,) labels of the failed clustering (-1 = outlier);
        eps: the DBSCAN radius it used (None: unknown); first: it was the run's first clustering.
    Returns:
        one or two sentences naming the failure and the keys to change, with their direction.
    """
    labels = np.asarray(labels)
    if c.METHOD == "kmeans":
        return f"Raise CLUSTERING.NUM_CLUSTERS (now {c.NUM_CLUSTERS})."
    key, value, note = _radius_key(c, eps, first)
    if failure_mode(labels) == "outliers":
        return (f"Most samples are outliers (the neighbourhoods are too tight): raise {key} (now {value}) "
                f"or lower CLUSTERING.MIN_SAMPLES (now {c.MIN_SAMPLES}).{note}")
    kept = labels[labels >= 0]
    largest = int(np.bincount(kept).max()) if len(kept) else 0
    return (f"The samples merged into a few large clusters (the largest holds {largest} of {len(labels)}): "
            f"lower {key} (now {value}) "
            f"or lower CLUSTERING.K1 (now {c.K1}) to link fewer neighbours.{note}")


__all__ = ["MOSTLY_OUTLIERS", "failure_mode", "too_few_clusters_advice"]
