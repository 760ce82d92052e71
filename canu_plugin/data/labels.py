"""Label values (fast-reid's "<dataset>_<id>" strings, ints) to contiguous indices, in one convention."""
import re

import numpy as np


def natural_key(value):
    """Sort key that compares the digit runs of ``str(value)`` as numbers ("msmt17_2" < "msmt17_10")."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", str(value)) if t]


def index_labels(values):
    """Contiguous indices of arbitrary label values, ordered naturally (:func:`natural_key`).

    Args:
        values: N hashable labels (ints, numpy ints, strings such as "msmt17_10").
    Returns:
        ((N,) int64 indices in [0, U), list of the U distinct values in index order).
    """
    values = [v.item() if isinstance(v, np.generic) else v for v in values]
    uniq = sorted(set(values), key=natural_key)
    where = {v: i for i, v in enumerate(uniq)}
    return np.array([where[v] for v in values], dtype=np.int64), uniq


__all__ = ["natural_key", "index_labels"]
