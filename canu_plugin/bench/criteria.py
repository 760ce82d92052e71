"""The criteria a synthetic testbed must meet before the methods under test run (docs/bench/testbed.md,
"Criteria, revision 2").

A testbed is chosen in the papers' regime from the rows that are NOT under test (:data:`ROWS`):
direct transfer, supervised on the target, the three bases (the pseudo-label baseline, MMT, SSG) and
ACAN's triplet-only row. No CANU, +Adv or ACAN-adversary row is run or read here (:func:`check_rows`),
so the choice cannot favour the methods it will judge. Each criterion is a pure function of the runs'
records ({(method, seed): record}, :func:`canu_plugin.bench.report.load_records`), reusing the
benchmark's metrics (:mod:`.metrics`) and paired intervals (:mod:`.stats`).

Revision 2 holds one premise per claim: a claim about a method on base B is decided only where B
closes >= :data:`CLOSED` of the gap (criterion 2) and, for CANU and +Adv, where B's pseudo-labels carry
the camera bias of CANU-ReID's Fig. 3 (criterion 4); :func:`premises` gives them per base. A testbed
passes when direct transfer is in range and the premises of the key claims hold: criteria 2 and 4 for
the baseline and MMT (:data:`GATED_BASES`), and ACAN's 5, 6, 7. SSG's premises and MMT - baseline are
measured and reported, not required.
"""
import math

import numpy as np

from canu_plugin.bench.metrics import METRICS
from canu_plugin.bench.stats import fmt_diff, paired_difference
from canu_plugin.errors import CanuError

BASES = ("pseudo", "mmt", "ssg")  # the methods CANU / +Adv are applied to
GATED_BASES = ("pseudo", "mmt")   # bases whose premises a testbed must meet (SSG's are reported)
ROWS = ("source", "upper") + BASES + ("acan_triplet",)  # the rows a testbed search runs
HELPERS = ("source_b",)  # MMT's second source model (a source run, not a row)
TRANSFER = (0.3, 0.5)    # direct transfer mAP / upper-bound mAP
CLOSED = 0.3             # share of the (upper - direct transfer) gap a base closes (mean over seeds)
NMI_FIRST = 1.5          # NMI(pseudo, cam) / NMI(true id, cam) at the first clustering (mean over seeds)
NMI_EVERY = 1.2          # ... and at every clustering (each clustering's mean over seeds)
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


def _row(key, label, text, passed, gate=True):
    return {"key": key, "label": label, "text": text, "pass": passed, "gate": gate}


def _within(mean, bounds):
    return None if mean is None else bounds[0] <= mean <= bounds[1]


def _paired(records, a, b, metric):
    """a - b on ``metric``, paired by seed: (text, pass): passes when the 95% interval lies above 0, fails
    when it does not, undecided (None) with fewer than two pairs."""
    diff = paired_difference(_per_seed(records, a, metric), _per_seed(records, b, metric))
    if diff["n"] == 0:
        return "-", None
    return fmt_diff(diff, METRICS[metric].decimals), None if diff["lo"] is None else diff["lo"] > 0


def nmi_ratios(records, method="pseudo"):
    """NMI(pseudo-labels, camera) / NMI(true ids, camera) at each clustering of ``method``'s runs.

    Returns:
        {seed: [ratio at clustering 0, 1, ...]} (inf where the true ids carry no camera information but
        the pseudo-labels do; view 0, the full body, for SSG).
    """
    out = {}
    for (m, seed), r in sorted(records.items()):
        if m != method:
            continue
        ratios = [p["nmi_cam"] / p["gt_nmi_cam"] if p["gt_nmi_cam"] > 0 else (math.inf if p["nmi_cam"] > 0 else 1.0)
                  for p in r["pseudo"] if "nmi_cam" in p and "gt_nmi_cam" in p]
        if ratios:
            out[seed] = ratios
    return out


def bias_premise(ratios):
    """CANU's premise from :func:`nmi_ratios`: the mean over seeds at each clustering (as far as every
    seed has one); (text, first mean, lowest mean, pass or None)."""
    if not ratios:
        return "-", None, None, None
    n = min(len(v) for v in ratios.values())
    means = [float(np.mean([v[e] for v in ratios.values()])) for e in range(n)]
    ok = means[0] >= NMI_FIRST and min(means) >= NMI_EVERY
    return f"first {means[0]:.2f}, min {min(means):.2f} (of {n})", means[0], min(means), ok


def _closed(records, base, source, gap):
    """Criterion 2 for one base: the mean share of the gap it closes (text, pass or None)."""
    text, mean = _summary(_ratio({s: v - source[s] for s, v in _per_seed(records, base).items() if s in source}, gap))
    return text, None if mean is None else mean >= CLOSED


def criteria(records):
    """Every criterion of docs/bench/testbed.md (revision 2) from the rows' records.

    Args:
        records: {(method, seed): record}; only :data:`ROWS`' are read (other runs are ignored).
    Returns:
        list of dicts: key, label, text (the measured number), pass (True / False / None = not measured),
        gate (whether the testbed's verdict depends on it).
    """
    records = {k: r for k, r in records.items() if k[0] in ROWS}  # a folder may also hold the methods' runs
    source, upper = _per_seed(records, "source"), _per_seed(records, "upper")
    text, mean = _summary(_ratio(source, upper))
    rows = [_row("transfer", "direct transfer / upper mAP", text, _within(mean, TRANSFER))]
    gap = {s: upper[s] - source[s] for s in source if s in upper}
    for base in BASES:
        text, ok = _closed(records, base, source, gap)
        rows.append(_row(f"closed_{base}", f"gap closed by {base}", text, ok, base in GATED_BASES))
    rows.append(_row("mmt", "MMT - baseline mAP", _paired(records, "mmt", "pseudo", "mAP")[0], None, False))
    for base in BASES:
        text, _, _, ok = bias_premise(nmi_ratios(records, base))
        rows.append(_row(f"nmi_{base}", f"NMI ratio of {base}", text, ok, base in GATED_BASES))
    rows.append(_row("d_inter", "triplet - upper d_inter", *_paired(records, "acan_triplet", "upper", "d_inter")))
    rows.append(_row("cam_probe", "triplet - upper cam probe", *_paired(records, "acan_triplet", "upper", "cam_probe")))
    text, mean = _summary(_ratio(_per_seed(records, "acan_triplet"), upper))
    rows.append(_row("triplet", "triplet-only / upper mAP", text, _within(mean, TRIPLET)))
    return rows


def premises(rows):
    """Per base, which premises hold: {base: {"closed": bool/None, "bias": bool/None}} from :func:`criteria`'s
    rows, and "acan": whether criteria 5, 6 and 7 all hold (None while one is undecided)."""
    by = {r["key"]: r["pass"] for r in rows}
    out = {b: {"closed": by[f"closed_{b}"], "bias": by[f"nmi_{b}"]} for b in BASES}
    acan = [by["d_inter"], by["cam_probe"], by["triplet"]]
    out["acan"] = False if False in acan else (None if None in acan else True)
    return out


def verdict(rows):
    """"pass" when every gating criterion passes, "fail" when one fails, else "incomplete"."""
    gating = [r["pass"] for r in rows if r.get("gate", True)]
    if any(p is False for p in gating):
        return "fail"
    return "pass" if all(gating) else "incomplete"


LOG_HEADER = ("| candidate | knobs | seeds | " + " | ".join(
    ("transfer ratio", "closed: baseline", "closed: MMT", "closed: SSG (reported)", "MMT - base (reported)",
     "NMI ratio: baseline", "NMI ratio: MMT", "NMI ratio: SSG (reported)", "d_inter triplet - upper",
     "cam probe triplet - upper", "triplet ratio")) + " | verdict | pretrain s | runs s |")


def log_row(name, knob_text, seeds, rows, pretrain_s=None, runs_s=None, decided=None):
    """One line of the candidate log (:data:`LOG_HEADER`): each criterion's number with ✓ / ✗;
    ``decided``: (key claims whose premises hold, key claims), added to the verdict."""
    mark = {True: " ✓", False: " ✗", None: ""}
    cells = [f"{r['text']}{mark[r['pass']]}" for r in rows]
    secs = [f"{s:.0f}" if s is not None else "-" for s in (pretrain_s, runs_s)]
    decided = f" ({decided[0]} of {decided[1]} key claims decidable)" if decided else ""
    return (f"| {name} | `{knob_text}` | {' '.join(map(str, seeds))} | " + " | ".join(cells)
            + f" | {verdict(rows)}{decided} | {secs[0]} | {secs[1]} |")


__all__ = ["BASES", "GATED_BASES", "ROWS", "TRANSFER", "CLOSED", "NMI_FIRST", "NMI_EVERY", "TRIPLET", "check_rows",
           "nmi_ratios", "bias_premise", "criteria", "premises", "verdict", "LOG_HEADER", "log_row"]
