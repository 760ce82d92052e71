"""``tools/testbed_candidates.py``: score a candidate synthetic testbed against the written criteria
(docs/bench/testbed.md) from the rows NOT under test only, and log it.

    python tools/testbed_candidates.py --testbed configs/synthetic/testbeds/pretrained.yml --seeds 0 1 2
    python tools/testbed_candidates.py --testbed configs/synthetic/testbeds/pretrained.yml \\
        --set target.camera_shift=1.0 --set pretrain.epochs=16 --name shift1-pre16
    python tools/testbed_candidates.py --testbed ... --pretrain-only     # the pre-training stage alone
    python tools/testbed_candidates.py --from-folder results/synthetic    # score finished runs, train nothing
    python tools/testbed_candidates.py --testbed ... --jobs 2            # two runs at once (1 thread, 0 workers each)

Runs direct transfer, supervised on the target, the pseudo-label baseline, MMT (with its second source
model) and ACAN triplet-only for each seed into ``<output>/testbeds/<name>-<hash>/`` (finished runs are
reused; the pre-trained backbone is made once and cached there), prints each criterion's number and
pass/fail, and appends one row to the candidate log (``--log``, default docs/bench/testbed.md). It
refuses to run any method under test (CANU, +Adv, ACAN's adversaries).
"""
import argparse
import json
import os
import sys
import time

import canu_plugin  # noqa: F401
from canu_plugin.bench import criteria as crit
from canu_plugin.bench.candidates import append_log, prepare, run_candidate, testbed_folder
from canu_plugin.bench.claims import PAPER_CLAIMS, decidable
from canu_plugin.bench.testbed import knobs, load_testbed, set_knob
from canu_plugin.errors import CanuError, user_errors


def parse_args(argv=None):
    """Command-line options of the candidate tool."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--testbed", default="configs/synthetic/testbeds/default.yml", help="the candidate's YAML / JSON")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="change one knob, e.g. target.camera_shift=1.0 or pretrain.epochs=16 (VALUE is JSON)")
    p.add_argument("--name", default=None, help="the candidate's name in the log (default: the testbed's)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=list(crit.ROWS), help=f"a subset of {list(crit.ROWS)}")
    p.add_argument("--output", default="results", help="the testbed's runs go in <output>/testbeds/")
    p.add_argument("--log", default="docs/bench/testbed.md", help="candidate log to append the row to ('' = none)")
    p.add_argument("--note", default="", help="text put after the candidate's name in the log (e.g. 'smoke test')")
    p.add_argument("--pretrain-only", action="store_true", help="only generate the data and pre-train (cached)")
    p.add_argument("--from-folder", default=None, metavar="DIR", help="train nothing: score the finished runs of a "
                   "benchmark folder (e.g. results/synthetic, the committed benchmark's) as this candidate")
    p.add_argument("--opts", nargs="*", default=[], help="KEY VALUE overrides for every run (not the pre-training)")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="up to N runs at once, each pinned to cores // N "
                   "cores with that many torch threads and no loader workers; runs made with other --jobs are not "
                   "reused (canu-bench --testbed reuses these runs with the same --jobs; default 1)")
    a = p.parse_args(argv)
    if a.jobs < 1:
        raise CanuError(f"--jobs {a.jobs}: give the number of runs at once, 1 or more")
    return a


def candidate(a):
    """The testbed of the command line: the file, its ``--set`` changes and ``--name``."""
    spec = load_testbed(a.testbed)
    for item in a.set:
        if "=" not in item:
            raise CanuError(f"--set takes KEY=VALUE, got {item!r}")
        set_knob(spec, *item.split("=", 1))
    if a.name:
        spec["name"] = a.name
    return load_testbed({k: v for k, v in spec.items()})


def from_folder(folder, seeds):
    """:func:`~canu_plugin.bench.candidates.run_candidate`'s result from a folder's finished runs."""
    from canu_plugin.bench.report import load_records
    records = {k: r for k, r in load_records(folder).items() if k[1] in seeds and k[0] in crit.ROWS}
    if not records:
        raise CanuError(f"--from-folder {folder}: no finished run of {list(crit.ROWS)} for seeds {seeds}")
    rows = crit.criteria(records)
    return {"folder": folder, "rows": rows, "verdict": crit.verdict(rows), "records": records, "pretrain_s": None,
            "runs_s": sum(r.get("wall_s", 0.0) for r in records.values())}


def print_rows(rows):
    """The criteria as a plain table on stdout."""
    for r in rows:
        flag = {True: "pass", False: "FAIL", None: "undecided (not measured, or one seed)"}[r["pass"]]
        print(f"  {r['label']:<36} {r['text']:<28} {flag}")


def main_run(argv=None):
    """Run the candidate (or only its pre-training) and log it; returns 0."""
    a = parse_args(argv)
    tb = candidate(a)
    crit.check_rows(a.methods)
    if a.pretrain_only:
        folder = testbed_folder(a.output, tb)
        stage = prepare(tb, folder, tuple(a.seeds))
        pre = stage["pretrain"]
        print(f"[testbed] data in {stage['root']}" + (f"; backbone {pre['path']} (pre-training {pre['wall_s']:.0f} s"
                                                        f"{', cached' if pre['cached'] else ''})" if pre else
                                                        "; no pre-training in this testbed"))
        return 0
    t0 = time.time()
    out = from_folder(a.from_folder, a.seeds) if a.from_folder else run_candidate(tb, a.output, a.seeds, a.methods,
                                                                                  a.opts, jobs=a.jobs)
    print(f"\n[testbed] {tb['name']} ({out['folder']}), seeds {a.seeds}: {out['verdict']}")
    print_rows(out["rows"])
    decided = decidable(PAPER_CLAIMS, out["rows"])
    n_key = sum(c.key for c in PAPER_CLAIMS)
    print(f"  key claims decidable (premises hold): {len(decided)} of {n_key}"
          + (f": {'; '.join(c.text for c in decided)}" if decided else ""))
    print(f"  pre-training {out['pretrain_s'] or 0:.0f} s (once per testbed), runs {out['runs_s']:.0f} s, "
          f"this command {time.time() - t0:.0f} s")
    if a.log:
        name = tb["name"] + (f" ({a.note})" if a.note else "")
        knob_text = json.dumps(knobs(tb), separators=(",", ":"), sort_keys=True) + (
            f" opts {' '.join(a.opts)}" if a.opts else "")
        append_log(a.log, crit.log_row(name, knob_text, a.seeds, out["rows"], out["pretrain_s"], out["runs_s"],
                                            (len(decided), n_key)))
        print(f"[testbed] logged in {os.path.relpath(a.log)}")
    return 0


def main(argv=None):
    """The candidate tool as a command: a CanuError in one line; returns the exit code."""
    with user_errors():
        return main_run(argv)


if __name__ == "__main__":
    sys.exit(main())
