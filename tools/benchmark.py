#!/usr/bin/env python
"""`make bench`: every method against fast-reid's baselines on one setting, with the same budget
and several seeds; one JSON per run, a markdown table (mean ± std over seeds) and plots in
results/<setting>/.

    python tools/benchmark.py                                   # synthetic SynthA -> SynthB, seeds 0 1
    python tools/benchmark.py --methods source pseudo canu --seeds 0 1 2
    python tools/benchmark.py --setting M2D --seeds 0           # Market -> Duke (FASTREID_DATASETS, GPU)
    python tools/benchmark.py --setting synthetic-video         # ACAN on synthetic tracklets (SynthVidB)
    python tools/benchmark.py --report-only                     # re-make table and plots
    python tools/benchmark.py --opts SOLVER.MAX_EPOCH 4         # overrides for every run

An interrupted sweep resumes: finished runs (their JSON exists) are skipped, an unfinished one
continues from its last checkpoint. Runs go in seed-major order, so a cut sweep has whole seeds.
"""
import argparse
import os
import sys
import time

import canu_plugin  # noqa: F401
from canu_plugin.bench.methods import DEFAULT_METHODS, SETTINGS, plan
from canu_plugin.bench.plots import write_plots
from canu_plugin.bench.report import load_records, write_report
from canu_plugin.bench.runner import execute, run_name
from canu_plugin.errors import CanuError, user_errors


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--setting", default="synthetic", choices=sorted(SETTINGS))
    p.add_argument("--methods", nargs="+", default=None, help="default: every row of the setting")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--root", default=os.getenv("FASTREID_DATASETS", "datasets"), help="dataset root")
    p.add_argument("--output", default="results", help="results/<setting>/ goes here")
    p.add_argument("--eval-period", type=int, default=2, help="evaluate adapting methods every N epochs (curves)")
    p.add_argument("--report-only", action="store_true", help="only re-make the table and plots")
    p.add_argument("--opts", nargs="*", default=[], help="KEY VALUE overrides applied to every run (same budget)")
    args = p.parse_args(argv)
    args.methods = args.methods or list(SETTINGS[args.setting].get("default_methods", DEFAULT_METHODS))
    return args


def prepare_data(setting, root):
    """Synthetic settings: generate the domains if absent (existing ones are used as they are);
    then check every dataset's folder."""
    from canu_plugin.data.datasets import check_dataset_layout
    names, generate = SETTINGS[setting]["datasets"], SETTINGS[setting].get("generate")
    if generate and not all(os.path.isdir(os.path.join(root, n)) for n in names):
        generate(root)
    for name in names:
        check_dataset_layout(name, root)


def sweep(args, folder):
    """Run every planned run not finished yet; returns the stems that were run now."""
    setting = SETTINGS[args.setting]
    done, ran = set(load_records(folder)), []
    for key, seed, deps in plan(args.setting, args.methods, args.seeds):
        if (key, seed) in done:
            continue
        stems = {role: run_name(*dep) for role, dep in deps.items()}
        execute(args.setting, key, setting["methods"][key], seed, stems, folder, setting["target"],
                eval_period=args.eval_period, extra=args.opts)
        ran.append(run_name(key, seed))
    return ran


def main(argv=None):
    args = parse_args(argv)
    os.environ["FASTREID_DATASETS"] = os.path.abspath(args.root)
    folder = os.path.abspath(os.path.join(args.output, args.setting))
    os.makedirs(folder, exist_ok=True)
    start = time.time()
    if not args.report_only:
        prepare_data(args.setting, os.environ["FASTREID_DATASETS"])
        ran = sweep(args, folder)
        print(f"[bench] {len(ran)} run(s) done in {time.time() - start:.0f} s")
    records = load_records(folder)
    if not records:
        raise CanuError(f"no finished run in {folder}: run without --report-only first")
    plots = write_plots(records, args.methods, folder)
    command = "" if args.report_only else "python tools/benchmark.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print("\n" + write_report(folder, args.methods, plots, command.strip()))
    print(f"\n[bench] table: {os.path.join(folder, 'results.md')}")
    for p in plots:
        print(f"[bench] plot:  {p}")


if __name__ == "__main__":
    with user_errors():
        sys.exit(main())
