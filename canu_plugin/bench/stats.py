"""Statistics a reviewer would accept: mean and sample standard deviation over seeds, and paired
differences between two methods that share a source model (same seed) with a 95% t-interval.

A claim "holds" when the interval excludes 0 in the claimed direction, "does not hold" when it
excludes 0 in the other, and is "inconclusive" when it contains 0 (or fewer than 2 pairs exist).
"""
import math

import numpy as np
from scipy import stats as _st

CONFIDENCE = 0.95


def describe(values):
    """Mean, sample standard deviation (ddof 1; None for one value) and count of the non-None values."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if len(v) == 0:
        return {"mean": None, "sd": None, "n": 0}
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else None, "n": int(len(v))}


def paired_difference(a, b):
    """Mean of ``a[s] - b[s]`` over the seeds both have, with its 95% t-interval.

    Args:
        a, b: {seed: value} (None values are skipped).
    Returns:
        dict: mean, sd (ddof 1), n, lo, hi (None when n < 2), seeds.
    """
    seeds = sorted(s for s in a if s in b and a[s] is not None and b[s] is not None)
    d = np.asarray([a[s] - b[s] for s in seeds], dtype=np.float64)
    out = {"mean": float(d.mean()) if len(d) else None, "sd": None, "n": len(d), "lo": None, "hi": None,
           "seeds": seeds}
    if len(d) >= 2:
        sd = float(d.std(ddof=1))
        half = float(_st.t.ppf(0.5 + CONFIDENCE / 2, len(d) - 1)) * sd / math.sqrt(len(d))
        out.update(sd=sd, lo=out["mean"] - half, hi=out["mean"] + half)
    return out


def verdict(diff, direction):
    """"holds" / "does not hold" / "inconclusive" for a claimed sign of a paired difference.

    Args:
        diff: :func:`paired_difference`'s dict; direction: +1 (a > b claimed) or -1 (a < b claimed).
    """
    if diff["lo"] is None:
        return "inconclusive (n < 2)"
    lo, hi = diff["lo"] * direction, diff["hi"] * direction
    if direction < 0:
        lo, hi = hi, lo
    if lo > 0:
        return "holds"
    if hi < 0:
        return "does not hold"
    return "inconclusive"


def half_width(diff):
    """Half the width of a :func:`paired_difference`'s 95% interval (None with fewer than 2 pairs)."""
    return None if diff["lo"] is None else (diff["hi"] - diff["lo"]) / 2.0


SEEDS_MAX = 200  # seeds_needed: the most it looks for


def seeds_needed(sd, target, n_max=SEEDS_MAX):
    """The fewest paired seeds whose 95% t-interval would have half-width <= ``target`` at this sample
    standard deviation of the differences: min n >= 2 with t(0.975, n - 1) sd / sqrt(n) <= target.

    Args:
        sd: sample standard deviation (ddof 1) of the paired differences so far; target: half-width.
    Returns:
        int, or None when more than ``n_max`` seeds would be needed (or sd is unknown).
    """
    if sd is None or not math.isfinite(sd):
        return None
    for n in range(2, n_max + 1):
        if float(_st.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * sd / math.sqrt(n) <= target:
            return n
    return None


def fmt_mean_sd(d, decimals):
    """'mean ± sd' (or 'mean' for one value, '-' for none)."""
    if d["n"] == 0:
        return "-"
    if d["sd"] is None:
        return f"{d['mean']:.{decimals}f}"
    return f"{d['mean']:.{decimals}f} ± {d['sd']:.{decimals}f}"


def fmt_diff(d, decimals):
    """'+1.2 [-0.3, +2.7]' (the 95% interval), or the mean alone for one pair, '-' for none."""
    if d["n"] == 0:
        return "-"
    if d["lo"] is None:
        return f"{d['mean']:+.{decimals}f}"
    return f"{d['mean']:+.{decimals}f} [{d['lo']:+.{decimals}f}, {d['hi']:+.{decimals}f}]"


__all__ = ["CONFIDENCE", "SEEDS_MAX", "describe", "paired_difference", "verdict", "half_width", "seeds_needed", "fmt_mean_sd",
           "fmt_diff"]
