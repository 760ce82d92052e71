"""The papers' claims the benchmark can decide, each as a paired comparison of two methods on one
metric with a claimed sign (:mod:`.stats`): "holds", "does not hold" or "inconclusive"."""
from dataclasses import dataclass

from canu_plugin.bench.metrics import METRICS
from canu_plugin.bench.stats import fmt_diff, paired_difference, verdict


@dataclass(frozen=True)
class Claim:
    """``a`` beats ``b`` on ``metric`` in the claimed ``direction`` (+1: higher, -1: lower).

    ``sweep``: (config key, value) when the comparison is made on a sweep's runs at that value.
    """
    text: str
    source: str
    metric: str
    a: str
    b: str
    direction: int
    sweep: tuple = None


FAMILIES = {"baseline": {"base": "pseudo", "adv": "adv", "canu": "canu"},
            "MMT": {"base": "mmt", "adv": "adv_mmt", "canu": "canu_mmt"},
            "SSG": {"base": "ssg", "adv": "adv_ssg", "canu": "canu_ssg"}}


def _three(text, source, metric, a, b, direction):
    """The same claim for the pseudo-label baseline, MMT and SSG; ``a``, ``b``: "base", "adv", "canu"."""
    return [Claim(f"{text} ({family})", source, metric, roles[a], roles[b], direction)
            for family, roles in FAMILIES.items()]


CLAIMS = (
    *_three("CANU lowers the camera information of the pseudo-labels", "CANU-ReID Fig. 3, 5", "nmi_cam_epochs",
            "canu", "base", -1),
    *_three("+CANU loses fewer identities than +Adv", "CANU-ReID Fig. 4, 6", "lost_ids_epochs", "canu", "adv", -1),
    *_three("+Adv beats the base method", "CANU-ReID Table IV", "mAP", "adv", "base", +1),
    *_three("+CANU beats +Adv", "CANU-ReID Table IV", "mAP", "canu", "adv", +1),
    *_three("+CANU beats the base method", "CANU-ReID Tables I, II, IV", "mAP", "canu", "base", +1),
    Claim("at a large weight (mu 1.0) +CANU holds where +Adv collapses", "CANU-ReID Table III", "mAP", "canu", "adv",
          +1, sweep=("MODEL.CANU.MU", 1.0)),
    Claim("ACAN-GRL beats triplet only", "ACAN Tables IV-VI", "mAP", "acan_grl", "acan_triplet", +1),
    Claim("ACAN-OCE beats triplet only", "ACAN Tables IV-VI", "mAP", "acan_oce", "acan_triplet", +1),
    Claim("OCE beats ACE", "ACAN Table VI", "mAP", "acan_oce", "acan_ace", +1),
    Claim("GRL lowers d_inter-camera", "ACAN Table VII", "d_inter", "acan_grl", "acan_triplet", -1),
    Claim("OCE lowers d_inter-camera", "ACAN Table VII", "d_inter", "acan_oce", "acan_triplet", -1),
)


def by_seed(records, method, metric):
    """{seed: metric value} of ``method``'s runs in ``records`` ({(method, seed): record})."""
    read = METRICS[metric].read
    return {seed: read(r) for (m, seed), r in records.items() if m == method}


def evaluate(claims, records, sweep_records=None):
    """One row per claim whose two methods were run.

    Args:
        records: {(method, seed): record} of the main table; sweep_records: {(key, value):
            {(method, seed): record}} of the sweeps.
    Returns:
        list of dicts: claim, n, the paired difference (its ``text`` formatted), verdict.
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
        rows.append({"claim": c, "diff": diff, "verdict": verdict(diff, c.direction),
                     "text": fmt_diff(diff, METRICS[c.metric].decimals)})
    return rows


def markdown(rows):
    """The claims table (GitHub markdown)."""
    lines = ["| claim | paper | measured (a - b, mean [95% CI]) | seeds | verdict |", "|---|---|---|---|---|"]
    for r in rows:
        c = r["claim"]
        where = f" at {c.sweep[0]} {c.sweep[1]}" if c.sweep else ""
        lines.append(f"| {c.text} | {c.source} | {METRICS[c.metric].header}: {c.a} - {c.b}{where} = {r['text']} "
                     f"| {r['diff']['n']} | {r['verdict']} |")
    return "\n".join(lines)


__all__ = ["Claim", "CLAIMS", "by_seed", "evaluate", "markdown"]
