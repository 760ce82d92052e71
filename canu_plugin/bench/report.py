"""The benchmark's report: tables (mean ± sample std over seeds), paired differences with 95%
intervals, the claims table, and what produced them (commit, versions, device, command), in
``results.md`` and ``summary.json`` (no absolute path in either)."""
import glob
import json
import os
import platform
import subprocess

from canu_plugin.bench.claims import CLAIMS, TARGET_HALF_WIDTH, by_seed, evaluate, markdown as claims_markdown
from canu_plugin.bench.methods import benchmark_seed
from canu_plugin.bench.metrics import DIFFERENCES, METRICS, PSEUDO_QUALITY, RETRIEVAL
from canu_plugin.bench.stats import SEEDS_MAX, describe, fmt_diff, fmt_mean_sd, paired_difference

# the comparison each method is paired with (same seed = same source model)
BASES = {"pseudo": "source", "adv": "pseudo", "canu": "pseudo", "mmt": "source", "adv_mmt": "mmt",
         "canu_mmt": "mmt", "ssg": "source", "adv_ssg": "ssg", "canu_ssg": "ssg", "acan_grl": "acan_triplet",
         "acan_oce": "acan_triplet", "acan_ace": "acan_triplet", "usl_adv": "usl_pseudo", "usl_canu": "usl_pseudo",
         "pseudo_cn": "pseudo", "canu_cn": "canu", "mmt_cn": "mmt"}
EXTRA_PAIRS = (("canu", "adv"), ("canu_mmt", "adv_mmt"), ("canu_ssg", "adv_ssg"), ("acan_oce", "acan_ace"),
               ("usl_canu", "usl_adv"), ("canu", "pseudo_cn"), ("canu_mmt", "mmt_cn"), ("canu_cn", "pseudo_cn"))


def load_records(folder):
    """Every finished run's JSON record directly in ``folder`` ({(method, seed): record})."""
    records = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
        with open(path) as f:
            r = json.load(f)
        if "method" in r and "seed" in r:
            records[(r["method"], r["seed"])] = r
    return records


def _runs(records, method):
    return [r for (m, _), r in sorted(records.items()) if m == method]


def measured(records, methods, columns):
    """The columns that at least one run of ``methods`` has a value for (a column nobody measured,
    e.g. clustering time for ACAN, is left out rather than printed as a row of '-')."""
    return [c for c in columns if any(METRICS[c].read(r) is not None for m in methods for r in _runs(records, m))]


def metric_table(records, methods, columns):
    """A markdown table: method, seeds, then each metric's mean ± sample std over the seeds (the
    columns no run measured are left out, :func:`measured`)."""
    columns = measured(records, methods, columns)
    header = ["method", "seeds"] + [METRICS[c].header for c in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for m in methods:
        runs = _runs(records, m)
        if runs:
            cells = [fmt_mean_sd(describe([METRICS[c].read(r) for r in runs]), METRICS[c].decimals) for c in columns]
            lines.append("| " + " | ".join([runs[0]["label"], ",".join(str(r["seed"]) for r in runs)] + cells) + " |")
    return "\n".join(lines)


def _pairs(records, methods):
    present = {m for m, _ in records}
    pairs = [(m, BASES[m]) for m in methods if m in BASES and BASES[m] in present and m in present]
    return pairs + [p for p in EXTRA_PAIRS if p[0] in methods and p[0] in present and p[1] in present]


def differences(records, methods, columns=DIFFERENCES):
    """Paired differences (same seed) of each method against its base: {(a, b): {metric: diff}}."""
    return {(a, b): {c: paired_difference(by_seed(records, a, c), by_seed(records, b, c)) for c in columns}
            for a, b in _pairs(records, methods)}


def differences_table(diffs, columns=DIFFERENCES):
    """Markdown: comparison, pairs, each metric's mean difference [95% t-interval] (the columns without
    a single pair are left out)."""
    columns = [c for c in columns if any(row[c]["n"] for row in diffs.values())]
    header = ["comparison (same seeds)", "pairs"] + [f"Δ {METRICS[c].header}" for c in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (a, b), row in diffs.items():
        n = max(d["n"] for d in row.values())
        cells = [fmt_diff(row[c], METRICS[c].decimals) for c in columns]
        lines.append("| " + " | ".join([f"{a} - {b}", str(n)] + cells) + " |")
    return "\n".join(lines)


def _version(module):
    """The module's ``__version__``; fastreid's from its wheel (the 1.4.0 wheel's module says ``1.3``)."""
    from importlib import metadata
    try:
        return metadata.version(module) if module == "fastreid" else __import__(module).__version__
    except Exception:  # noqa: BLE001 - reported as absent
        return "absent"


def provenance(command=""):
    """Commit, library versions, device and the command that made the results (no paths)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=os.path.dirname(os.path.abspath(__file__)), timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    import torch
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({platform.processor() or 'x86_64'}, " \
        f"{os.cpu_count()} cores)"
    return {"commit": commit or "unknown", "python": platform.python_version(), "device": device, "command": command,
            **{m: _version(m) for m in ("torch", "torchvision", "fastreid", "faiss", "numpy", "scipy", "sklearn")}}


LEGEND = ("Cells: mean ± sample standard deviation (ddof 1) over the seeds listed. Differences: mean over the "
          "seeds both methods ran (the same seed = the same source model) [95% t-interval]; a claim holds only "
          "when its interval excludes 0 in the claimed direction.")


def regime_table(regime):
    """Markdown of a testbed's criteria rows (:func:`.criteria.criteria`): criterion, measured, verdict."""
    def mark(r):
        if r["text"] == "-":
            return "not measured"
        return {True: "holds", False: "fails", None: "reported" if not r["gate"] else "undecided"}[r["pass"]]
    lines = ["| criterion (revision 2) | measured: mean (min-max over seeds) | premise |", "|---|---|---|"]
    lines += [f"| {r['label']}{'' if r['gate'] else ' (reported)'} | {r['text']} | {mark(r)} |" for r in regime]
    return "\n".join(lines)


def _core_s(records):
    """{method: mean core-seconds of its runs} (``wall_s`` x ``identity.threads``)."""
    out = {}
    for (method, _), r in records.items():
        threads = (r.get("identity") or {}).get("threads") or 1
        out.setdefault(method, []).append(float(r.get("wall_s") or 0.0) * threads)
    return {m: sum(v) / len(v) for m, v in out.items()}


def claim_runs(claim, records):
    """The methods a further seed of ``claim`` runs: its two methods and the source models they start from
    (``source``; MMT's ``source_b`` too), as their records' ``family`` says."""
    methods = {claim.a, claim.b}
    families = {r.get("family") for (m, _), r in records.items() if m in methods}
    if families & {"clustering", "mmt", "ssg"}:
        methods.add("source")
    if "mmt" in families:
        methods.add("source_b")
    return methods


def seed_plan(claims, records):
    """How many more seeds the key claims need for +-TARGET_HALF_WIDTH, and what they cost: the k-th further
    seed runs only what the claims still short of their seeds need (:func:`claim_runs`), at the mean
    core-seconds of those runs so far.

    Args:
        claims: :func:`.claims.evaluate`'s rows; records: {(method, seed): record} (``wall_s`` and
            ``identity.threads`` give each run's core-seconds).
    Returns:
        dict: needed (the most seeds a decidable key claim needs), claim (its text), seeds (the fewest seeds
        such a claim has now), core_s_per_seed (a whole seed of every method: the mean over seeds of the
        core-seconds of all its runs), more (further seeds, the largest shortfall), more_core_h (their
        cost), short ({claim text: seeds still needed}), beyond (the decidable key claims whose spread needs
        more seeds than :data:`.stats.SEEDS_MAX`: left out of the plan); None without a decidable key claim
        with an estimate.
    """
    key = [r for r in claims if r["claim"].key and not r["failed"] and r["needed"] is not None]
    beyond = [r["claim"].text for r in claims if r["claim"].key and not r["failed"] and r["needed"] is None
              and r["diff"]["sd"] is not None]
    if not key:
        return None
    worst = max(key, key=lambda r: r["needed"])
    per_seed = {}
    for (method, seed), r in records.items():  # MMT's second source model (seed + 100) counts in its seed's
        threads = (r.get("identity") or {}).get("threads") or 1
        seed = benchmark_seed(method, seed)
        per_seed[seed] = per_seed.get(seed, 0.0) + float(r.get("wall_s") or 0.0) * threads
    cost, short = _core_s(records), {r["claim"].text: max(0, r["needed"] - r["diff"]["n"]) for r in key}
    more, core_s = max(short.values()), 0.0
    for k in range(1, more + 1):
        runs = set().union(*(claim_runs(r["claim"], records) for r in key if short[r["claim"].text] >= k))
        core_s += sum(cost.get(m, 0.0) for m in runs)
    return {"needed": worst["needed"], "claim": worst["claim"].text, "seeds": min(r["diff"]["n"] for r in key),
            "core_s_per_seed": sum(per_seed.values()) / max(1, len(per_seed)), "more": more,
            "more_core_h": core_s / 3600.0, "short": {c: n for c, n in short.items() if n}, "beyond": beyond}


def plan_text(plan):
    """One paragraph for results.md from :func:`seed_plan`."""
    if plan is None:
        return ""
    return (f"Seeds for a 95% half-width of ±{TARGET_HALF_WIDTH:g} mAP on every decidable key claim, predicted "
            f"from the paired standard deviations so far: {plan['needed']} (the most, for \"{plan['claim']}\"; "
            f"{plan['seeds']} now). A seed of every method took {plan['core_s_per_seed'] / 3600:.2f} core-hours on "
            f"average; the {plan['more']} further seed(s), each running only the methods of the key claims still "
            f"short of their seeds (and their source models), need about {plan['more_core_h']:.1f} core-hours."
            + (f" Left out: {len(plan['beyond'])} key claim(s) whose paired spread needs more than {SEEDS_MAX} seeds "
               f"({'; '.join(plan['beyond'])})." if plan.get("beyond") else "") + "\n\n")


def render(records, methods, meta, sweep_records=None, plots=(), regime=None):
    """The text of results.md and the summary dict. Sections and columns without a measured value
    (the pseudo-label table of a benchmark without clustering methods) are left out. ``regime``: a
    testbed's criteria rows (:func:`.criteria.criteria`); a claim whose premise fails there is "out
    of regime"."""
    diffs = differences(records, methods)
    claims = evaluate(CLAIMS, records, sweep_records, regime)
    clustered = [m for m in methods if any(r["pseudo"] for r in _runs(records, m))]
    retrieval, quality = measured(records, methods, RETRIEVAL), measured(records, clustered, PSEUDO_QUALITY)
    legend = "\n".join(f"- {METRICS[c].header}: {METRICS[c].legend}" for c in dict.fromkeys(retrieval + quality))
    text = (f"Command: `{meta['command']}`\n\nCommit {meta['commit']}, {meta['device']}, torch {meta['torch']}, "
            f"fastreid {meta['fastreid']}, faiss {meta['faiss']}.\n\n## Retrieval and camera measures\n\n"
            f"{metric_table(records, methods, retrieval)}\n\n")
    if quality:
        text += f"## Pseudo-label quality (clustering methods)\n\n{metric_table(records, clustered, quality)}\n\n"
    if diffs:
        text += f"## Paired differences\n\n{differences_table(diffs)}\n\n"
    if regime:
        text += f"## The testbed's regime\n\n{regime_table(regime)}\n\n"
    plan = seed_plan(claims, records)
    text += f"## The claims\n\n{claims_markdown(claims)}\n\n{plan_text(plan)}{LEGEND}\n\n{legend}\n"
    if plots:
        text += "\n## Plots\n\n" + "\n".join(f"![{os.path.basename(p)}]({p})" for p in plots) + "\n"
    summary = {"meta": meta,
               "methods": {m: {c: describe([METRICS[c].read(r) for r in _runs(records, m)]) for c in METRICS}
                           for m in methods if _runs(records, m)},
               "differences": [{"a": a, "b": b, **{c: d for c, d in row.items()}} for (a, b), row in diffs.items()],
               "regime": list(regime or ()), "seed_plan": plan,
               "claims": [{"claim": r["claim"].text, "source": r["claim"].source, "metric": r["claim"].metric,
                           "a": r["claim"].a, "b": r["claim"].b, "key": r["claim"].key, "difference": r["diff"],
                           "half_width": r["half"], "seeds_needed": r["needed"], "failed_premises": r["failed"],
                           "verdict": r["verdict"]} for r in claims]}
    return text, summary


def write_report(folder, methods, plots=(), command="", sweep_records=None, regime=None):
    """Write ``folder/results.md`` and ``folder/summary.json``; returns the text. Without ``command``
    the earlier report's command is kept (``--report-only``); ``regime``: as in :func:`render`."""
    old = os.path.join(folder, "summary.json")
    if not command and os.path.isfile(old):
        with open(old) as f:
            command = json.load(f).get("meta", {}).get("command", "")
    meta = provenance(command)
    rel = [os.path.relpath(p, folder) for p in plots]
    text, summary = render(load_records(folder), methods, meta, sweep_records, rel, regime)
    with open(os.path.join(folder, "results.md"), "w") as f:
        f.write(text)
    with open(old, "w") as f:
        json.dump(summary, f, indent=1)
    return text


__all__ = ["BASES", "load_records", "metric_table", "differences", "differences_table", "measured", "provenance",
           "regime_table", "seed_plan", "plan_text", "render", "write_report"]
