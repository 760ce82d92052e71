"""The criteria a synthetic testbed must meet before the methods under test run (docs/bench/testbed.md).

A testbed is chosen in the papers' regime from the rows that are NOT under test (:data:`ROWS`):
direct transfer, supervised on the target, the pseudo-label baseline, MMT and ACAN's triplet-only
row. No CANU, +Adv or ACAN-adversary row is run or read here (:func:`check_rows`), so the choice
cannot favour the methods it will judge. Each criterion is a pure function of the runs' records
({(method, seed): record}, :func:`canu_plugin.bench.report.load_records`), reusing the benchmark's
metrics (:mod:`.metrics`) and paired intervals (:mod:`.stats`).
"""
import math

import numpy as np

from canu_plugin.bench.metrics import METRICS
from canu_plugin.bench.stats import fmt_diff, paired_difference
from canu_plugin.errors import CanuError

ROWS = ("source", "upper", "pseudo", "mmt", "acan_triplet")  # the rows a testbed search runs
HELPERS = ("source_b",)  # MMT's second source model (a source run, not a row)
TRANSFER = (0.3, 0.5)    # direct transfer mAP / upper-bound mAP
CLOSED = 0.4             # share of the (upper - direct transfer) gap the baseline closes
NMI_FACTOR = 1.5         # NMI(pseudo, cam) >= this x NMI(true id, cam), at every clustering
TRIPLET = (0.3, 0.5)     # ACAN triplet-only mAP / upper-bound mAP


def check_rows(methods):
    """Raise CanuError for a method the testbed search must not run (a method under test)."""
    bad = [m for m in methods if m not in ROWS + HELPERS]
    if bad:
        raise CanuError(f"the testbed search runs only the rows not under test {list(ROWS)}; {bad} are methods "
                        "under test (or unknown) and must not influence the testbed's choice")


def _per_seed(records, method, metric="mAP"):
    read = METRICS[metric].read
    return {s: read(r) for (m, s), r in records.items() if m == method and read(r) is not None}


def _ratio(num, den):
    """{seed: num / den} over the seeds both have."""
    return {s: num[s] / den[s] for s in num if s in den and den[s]}


def _summary(values):
    """'mean (min-max over seeds)' of {seed: value}; and the mean (None when empty)."""
    v = list(values.values())
    if not v:
        return "-", None
    mean = float(np.mean(v))
    return (f"{mean:.2f}" + (f" ({min(v):.2f}-{max(v):.2f})" if len(v) > 1 else "")), mean


def _row(key, label, text, passed):
    return {"key": key, "label": label, "text": text, "pass": passed}


def _within(mean, bounds):
    return None if mean is None else bounds[0] <= mean <= bounds[1]


def _paired(records, a, b, metric, key, label):
    """a - b on ``metric``, paired by seed; passes when the 95% interval lies above 0, fails when it
    does not, undecided (None) with fewer than two pairs."""
    diff = paired_difference(_per_seed(records, a, metric), _per_seed(records, b, metric))
    if diff["n"] == 0:
        return _row(key, label, "-", None)
    return _row(key, label, fmt_diff(diff, METRICS[metric].decimals), None if diff["lo"] is None else diff["lo"] > 0)


def nmi_ratios(records, method="pseudo"):
    """NMI(pseudo-labels, camera) / NMI(true ids, camera) at every clustering of ``method``'s runs
    (a flat list; inf where the true ids carry no camera information but the pseudo-labels do)."""
    out = []
    for (m, _), r in sorted(records.items()):
        for p in r["pseudo"] if m == method else ():
            if "nmi_cam" in p and "gt_nmi_cam" in p:
                out.append(p["nmi_cam"] / p["gt_nmi_cam"] if p["gt_nmi_cam"] > 0
                           else (math.inf if p["nmi_cam"] > 0 else 1.0))
    return out


def criteria(records):
    """Every criterion of docs/bench/testbed.md from the rows' records.

    Args:
        records: {(method, seed): record}; only :data:`ROWS`' are read (other runs are ignored).
    Returns:
        list of dicts: key, label, text (the measured number), pass (True / False / None = not measured).
    """
    records = {k: r for k, r in records.items() if k[0] in ROWS}  # a folder may also hold the methods' runs
    source, upper = _per_seed(records, "source"), _per_seed(records, "upper")
    pseudo, triplet = _per_seed(records, "pseudo"), _per_seed(records, "acan_triplet")
    text, mean = _summary(_ratio(source, upper))
    rows = [_row("transfer", "direct transfer / upper mAP", text, _within(mean, TRANSFER))]
    gap = {s: upper[s] - source[s] for s in source if s in upper}
    text, mean = _summary(_ratio({s: pseudo[s] - source[s] for s in pseudo if s in source}, gap))
    rows.append(_row("closed", "gap closed by the baseline", text, None if mean is None else mean >= CLOSED))
    rows.append(_paired(records, "mmt", "pseudo", "mAP", "mmt", "MMT - baseline mAP"))
    ratios = nmi_ratios(records)
    rows.append(_row("nmi", "min NMI(pseudo,cam) / NMI(id,cam)", f"{min(ratios):.2f} (of {len(ratios)})"
                     if ratios else "-", min(ratios) >= NMI_FACTOR if ratios else None))
    rows.append(_paired(records, "acan_triplet", "upper", "d_inter", "d_inter", "triplet - upper d_inter"))
    rows.append(_paired(records, "acan_triplet", "upper", "cam_probe", "cam_probe", "triplet - upper cam probe"))
    text, mean = _summary(_ratio(triplet, upper))
    rows.append(_row("triplet", "triplet-only / upper mAP", text, _within(mean, TRIPLET)))
    return rows


def verdict(rows):
    """"pass" when every criterion passes, "fail" when one fails, else "incomplete"."""
    if any(r["pass"] is False for r in rows):
        return "fail"
    return "pass" if all(r["pass"] for r in rows) else "incomplete"


LOG_HEADER = ("| candidate | knobs | seeds | " + " | ".join(
    ("transfer ratio", "gap closed", "MMT - base", "NMI ratio min", "d_inter triplet - upper",
     "cam probe triplet - upper", "triplet ratio")) + " | verdict | pretrain s | runs s |")


def log_row(name, knob_text, seeds, rows, pretrain_s=None, runs_s=None):
    """One line of the candidate log (:data:`LOG_HEADER`): each criterion's number with ✓ / ✗."""
    mark = {True: " ✓", False: " ✗", None: ""}
    cells = [f"{r['text']}{mark[r['pass']]}" for r in rows]
    secs = [f"{s:.0f}" if s is not None else "-" for s in (pretrain_s, runs_s)]
    return (f"| {name} | `{knob_text}` | {' '.join(map(str, seeds))} | " + " | ".join(cells)
            + f" | {verdict(rows)} | {secs[0]} | {secs[1]} |")


__all__ = ["ROWS", "TRANSFER", "CLOSED", "NMI_FACTOR", "TRIPLET", "check_rows", "nmi_ratios", "criteria",
           "verdict", "LOG_HEADER", "log_row"]
