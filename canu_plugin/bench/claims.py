"""The papers' claims the benchmark can decide, each as a paired comparison of two methods on one
metric with a claimed sign (:mod:`.stats`): "holds", "does not hold" or "inconclusive"; or "out of
regime" where a premise of the testbed's criteria (docs/bench/testbed.md, revision 2) fails.

A claim about CANU or +Adv on base B rests on direct transfer being in range and on B's premises (B
closes enough of the gap; B's pseudo-labels carry the camera bias); ACAN's claims rest on criteria 5,
6 and 7. :data:`RIVAL_CLAIMS` set CANU against the simplest camera debiasing, per-camera feature normalization
before clustering (the rows of :data:`.methods.RIVALS`), on the same premises. The *key* claims are the
comparisons a benchmark adds seeds for until their 95% interval is
+-:data:`TARGET_HALF_WIDTH` mAP; :func:`evaluate` predicts how many seeds that takes from the paired
standard deviation so far.
"""
from dataclasses import dataclass

from canu_plugin.bench.metrics import METRICS
from canu_plugin.bench.stats import SEEDS_MAX, fmt_diff, half_width, paired_difference, seeds_needed, verdict

TARGET_HALF_WIDTH = 1.5  # mAP: the key claims' 95% half-width the benchmark adds seeds for
ACAN_PREMISES = ("d_inter", "cam_probe", "triplet")  # criteria 5, 6, 7 (:func:`.criteria.criteria`'s keys)


@dataclass(frozen=True)
class Claim:
    """``a`` beats ``b`` on ``metric`` in the claimed ``direction`` (+1: higher, -1: lower).

    ``sweep``: (config key, value) when the comparison is made on a sweep's runs at that value;
    ``premises``: the keys of the testbed criteria (:func:`.criteria.criteria`) the claim rests on;
    ``key``: a key comparison (seeds are added until its interval is +-:data:`TARGET_HALF_WIDTH`).
    """
    text: str
    source: str
    metric: str
    a: str
    b: str
    direction: int
    sweep: tuple = None
    premises: tuple = ()
    key: bool = False


FAMILIES = {"baseline": {"base": "pseudo", "adv": "adv", "canu": "canu"},
            "MMT": {"base": "mmt", "adv": "adv_mmt", "canu": "canu_mmt"},
            "SSG": {"base": "ssg", "adv": "adv_ssg", "canu": "canu_ssg"}}


def _three(text, source, metric, a, b, direction, key=()):
    """The same claim for the pseudo-label baseline, MMT and SSG; ``a``, ``b``: "base", "adv", "canu";
    each rests on direct transfer and its base's premises; ``key``: the families where it is a key claim."""
    return [Claim(f"{text} ({family})", source, metric, roles[a], roles[b], direction,
                  premises=("transfer", f"closed_{roles['base']}", f"nmi_{roles['base']}"), key=family in key)
            for family, roles in FAMILIES.items()]


def _acan(text, source, metric, a, b, direction, key=False):
    return Claim(text, source, metric, a, b, direction, premises=ACAN_PREMISES, key=key)


PAPER_CLAIMS = (
    *_three("CANU lowers the camera information of the pseudo-labels", "CANU-ReID Fig. 3, 5", "nmi_cam_epochs",
            "canu", "base", -1),
    *_three("+CANU loses fewer identities than +Adv", "CANU-ReID Fig. 4, 6", "lost_ids_epochs", "canu", "adv", -1),
    *_three("+Adv beats the base method", "CANU-ReID Table IV", "mAP", "adv", "base", +1, key=("MMT",)),
    *_three("+CANU beats +Adv", "CANU-ReID Table IV", "mAP", "canu", "adv", +1, key=("baseline", "MMT")),
    *_three("+CANU beats the base method", "CANU-ReID Tables I, II, IV", "mAP", "canu", "base", +1,
            key=("baseline", "MMT", "SSG")),
    Claim("at a large weight (mu 1.0) +CANU holds where +Adv collapses", "CANU-ReID Table III", "mAP", "canu", "adv",
          +1, sweep=("MODEL.CANU.MU", 1.0), premises=("transfer", "closed_pseudo", "nmi_pseudo")),
    _acan("ACAN-GRL beats triplet only", "ACAN Tables IV-VI", "mAP", "acan_grl", "acan_triplet", +1, key=True),
    _acan("ACAN-OCE beats triplet only", "ACAN Tables IV-VI", "mAP", "acan_oce", "acan_triplet", +1, key=True),
    _acan("ACAN-ACE beats triplet only", "ACAN Tables V, VI", "mAP", "acan_ace", "acan_triplet", +1, key=True),
    _acan("OCE beats ACE", "ACAN Table VI", "mAP", "acan_oce", "acan_ace", +1),
    _acan("GRL lowers d_inter-camera", "ACAN Table VII", "d_inter", "acan_grl", "acan_triplet", -1),
    _acan("OCE lowers d_inter-camera", "ACAN Table VII", "d_inter", "acan_oce", "acan_triplet", -1),
)

_BASE_PREMISES = {base: ("transfer", f"closed_{base}", f"nmi_{base}") for base in ("pseudo", "mmt")}
RIVAL = "rival: Song et al. ICLR 2025"  # the rows of methods.RIVALS: debiased pseudo-labelling by camera normalization


def _rival(text, metric, a, b, direction, base, key=True):
    return Claim(text, RIVAL, metric, a, b, direction, premises=_BASE_PREMISES[base], key=key)


RIVAL_CLAIMS = (
    _rival("+CANU beats camera normalization (baseline)", "mAP", "canu", "pseudo_cn", +1, "pseudo"),
    _rival("CANU-MMT beats MMT + camera normalization", "mAP", "canu_mmt", "mmt_cn", +1, "mmt"),
    _rival("CANU + camera normalization beats CANU alone", "mAP", "canu_cn", "canu", +1, "pseudo"),
    _rival("CANU + camera normalization beats camera normalization alone", "mAP", "canu_cn", "pseudo_cn", +1, "pseudo"),
    _rival("camera normalization lowers the pseudo-labels' camera bias (baseline)", "nmi_ratio_epochs", "pseudo_cn",
           "pseudo", -1, "pseudo", key=False),
    _rival("camera normalization lowers it more than CANU (baseline)", "nmi_ratio_epochs", "pseudo_cn", "canu", -1,
           "pseudo", key=False),
    _rival("camera normalization lowers the pseudo-labels' camera bias (MMT)", "nmi_ratio_epochs", "mmt_cn", "mmt",
           -1, "mmt", key=False),
)
CLAIMS = PAPER_CLAIMS + RIVAL_CLAIMS


def by_seed(records, method, metric):
    """{seed: metric value} of ``method``'s runs in ``records`` ({(method, seed): record})."""
    read = METRICS[metric].read
    return {seed: read(r) for (m, seed), r in records.items() if m == method}


def failed_premises(claim, regime):
    """The premises of ``claim`` that the testbed's criteria rows (:func:`.criteria.criteria`) fail:
    ["label (measured)", ...]; empty when all hold or were not measured (``regime`` None)."""
    by = {r["key"]: r for r in regime or ()}
    return [f"{by[k]['label']} {by[k]['text']}" for k in claim.premises if k in by and by[k]["pass"] is False]


def decidable(claims, regime):
    """The key claims whose premises all hold in a testbed's criteria rows (:func:`.criteria.criteria`):
    what a candidate testbed can decide (procedure step 3 of docs/bench/testbed.md ranks by their number)."""
    by = {r["key"]: r["pass"] for r in regime}
    return [c for c in claims if c.key and all(by.get(k) is True for k in c.premises)]


def evaluate(claims, records, sweep_records=None, regime=None):
    """One row per claim whose two methods were run.

    Args:
        records: {(method, seed): record} of the main table; sweep_records: {(key, value):
            {(method, seed): record}} of the sweeps; regime: the testbed's criteria rows
            (:func:`.criteria.criteria` of the same runs), or None to decide every claim.
    Returns:
        list of dicts: claim, diff (the paired difference; its ``text`` formatted), half (95%
        half-width), needed (key claims: seeds predicted for +-:data:`TARGET_HALF_WIDTH`), failed
        (premises that fail), verdict ("out of regime: ..." when one fails).
    """
    rows = []
    for c in claims:
        pool = records if c.sweep is None else (sweep_records or {}).get(c.sweep, {})
        a, b = by_seed(pool, c.a, c.metric), by_seed(pool, c.b, c.metric)
        if not a or not b:
            continue
        diff = paired_difference(a, b)
        if diff["n"] == 0:
            continue
        failed = failed_premises(c, regime)
        rows.append({"claim": c, "diff": diff, "text": fmt_diff(diff, METRICS[c.metric].decimals),
                     "half": half_width(diff), "failed": failed,
                     "needed": seeds_needed(diff["sd"], TARGET_HALF_WIDTH) if c.key else None,
                     "verdict": "out of regime: " + "; ".join(failed) if failed else verdict(diff, c.direction)})
    return rows


def markdown(rows):
    """The claims table (GitHub markdown); key claims in bold, with the seeds their interval needs."""
    lines = [f"| claim | paper | measured (a - b, mean [95% CI]) | seeds | ± (95%) | seeds for ±{TARGET_HALF_WIDTH:g} "
             "(key claims) | verdict |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        c = r["claim"]
        where = f" at {c.sweep[0]} {c.sweep[1]}" if c.sweep else ""
        half = "-" if r["half"] is None else f"{r['half']:.{METRICS[c.metric].decimals}f}"
        needed = "-" if not c.key else (str(r["needed"]) if r["needed"] else
                                        "n/a" if r["diff"]["sd"] is None else f"> {SEEDS_MAX}")
        lines.append(f"| {'**' + c.text + '**' if c.key else c.text} | {c.source} | {METRICS[c.metric].header}: "
                     f"{c.a} - {c.b}{where} = {r['text']} | {r['diff']['n']} | {half} | {needed} | {r['verdict']} |")
    return "\n".join(lines)


__all__ = ["TARGET_HALF_WIDTH", "ACAN_PREMISES", "Claim", "PAPER_CLAIMS", "RIVAL_CLAIMS", "CLAIMS", "by_seed",
           "failed_premises", "decidable",
           "evaluate", "markdown"]
