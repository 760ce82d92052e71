"""``canu-bench`` (= ``tools/benchmark.py``, ``make bench``): every method against fast-reid's
baselines on one setting, with the same budget and several seeds; one JSON per run, a markdown
table (mean ± std over seeds) and plots in results/<setting>/.

    canu-bench                                   # synthetic SynthA -> SynthB, seeds 0 1
    canu-bench --methods source pseudo canu --seeds 0 1 2
    canu-bench --setting M2D --seeds 0           # Market -> Duke (FASTREID_DATASETS, GPU)
    canu-bench --report-only                     # re-make table and plots
    canu-bench --opts SOLVER.MAX_EPOCH 4         # overrides for every run

An interrupted sweep resumes: finished runs (their JSON exists) are skipped, an unfinished one
continues from its last checkpoint. Runs go in seed-major order, so a cut sweep has whole seeds.
"""
import argparse
import os
import sys
import time

import canu_plugin  # noqa: F401
from canu_plugin.bench.methods import SETTINGS, default_methods, plan
from canu_plugin.bench.plots import write_plots
from canu_plugin.bench.report import load_records, write_report
from canu_plugin.bench.runner import check_identity, execute, identity, run_name, run_opts
from canu_plugin.errors import CanuError, user_errors


def parse_args(argv=None):
    """Command-line options of the benchmark."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--setting", default="synthetic", choices=sorted(SETTINGS))
    p.add_argument("--methods", nargs="+", default=None, help="default: every method the setting has")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--root", default=os.getenv("FASTREID_DATASETS", "datasets"), help="dataset root")
    p.add_argument("--output", default="results", help="results/<setting>/ goes here")
    p.add_argument("--eval-period", type=int, default=2, help="evaluate adapting methods every N epochs (curves)")
    p.add_argument("--report-only", action="store_true", help="only re-make the table and plots")
    p.add_argument("--opts", nargs="*", default=[], help="KEY VALUE overrides applied to every run (same budget)")
    return p.parse_args(argv)


def prepare_data(setting, root):
    """Synthetic setting: generate the domains if absent (existing ones are used as they are);
    then check every dataset's folder."""
    from canu_plugin.data.datasets import check_dataset_layout
    names = SETTINGS[setting]["datasets"]
    if setting == "synthetic" and not all(os.path.isdir(os.path.join(root, n)) for n in names):
        from canu_plugin.data.synthetic import generate_all
        generate_all(root)
    for name in names:
        check_dataset_layout(name, root)


def sweep(args, folder):
    """Run every planned run not finished yet; returns the stems that were run now."""
    setting = SETTINGS[args.setting]
    done, ran = load_records(folder), []
    for key, seed, deps in plan(args.setting, args.methods, args.seeds):
        stems = {role: run_name(*dep) for role, dep in deps.items()}
        if (key, seed) in done:  # finished: reused only if it was run with these options
            method = setting["methods"][key]
            opts = run_opts(key, method, seed, stems, folder, args.eval_period, args.opts)
            check_identity(done[(key, seed)].get("identity"), identity(method, opts, folder),
                           os.path.join(folder, run_name(key, seed) + ".json"))
            continue
        execute(args.setting, key, setting["methods"][key], seed, stems, folder, setting["target"],
                eval_period=args.eval_period, extra=args.opts)
        ran.append(run_name(key, seed))
    return ran


def bench(argv=None, prog="canu-bench"):
    """Run the sweep and write the report; ``prog`` is how the report's command line starts.

    Raises:
        CanuError: bad arguments or data, a failed run (its log is named).
    """
    args = parse_args(argv)
    args.methods = args.methods or default_methods(args.setting)
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
    command = "" if args.report_only else f"{prog} " + " ".join(sys.argv[1:] if argv is None else argv)
    print("\n" + write_report(folder, args.methods, plots, command.strip()))
    print(f"\n[bench] table: {os.path.join(folder, 'results.md')}")
    for p in plots:
        print(f"[bench] plot:  {p}")
    return 0


DEMO_METHODS = ["source", "pseudo", "canu", "acan_triplet", "acan_oce"]


def _as_command(run):
    """Run ``run()`` as a command: a CanuError in one line, Ctrl-C one line saying how to resume
    (exit code 130); returns run's exit code."""
    with user_errors():
        try:
            return run()
        except KeyboardInterrupt:
            print("\n[bench] interrupted: run the same command again to resume (finished runs are kept, the "
                  "interrupted one continues from its last checkpoint)", file=sys.stderr)
            return 130


def main(argv=None, prog="canu-bench"):
    """``canu-bench``: :func:`bench` as a command (:func:`_as_command`); returns the exit code."""
    return _as_command(lambda: bench(argv, prog))


def demo_main(argv=None, prog="python tools/benchmark.py"):
    """``make demo`` (``tools/demo.py``): the short version of the benchmark, on CPU.

    1. generates the synthetic domains SynthA (source, labelled) and SynthB (target, unlabelled) in
       Market-1501's layout if absent;
    2. trains fast-reid's supervised Baseline on SynthA and tests it on SynthB (direct transfer);
    3. adapts it to SynthB with cluster pseudo-labels, and with pseudo-labels + CANU's camera
       discriminator conditioned on the pseudo-identity centroid;
    4. trains ACAN on SynthB's intra-camera labels, triplet only and with OCE;
    5. prints the table and the paths of its plots (results in ``logs/demo``).

    Five methods, seed 0, same budget per row; finished runs are not redone. Further arguments
    (``--root``, ``--opts`` ...) are passed on. The full sweep is ``make bench``.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    start = time.time()
    code = _as_command(lambda: bench(["--methods", *DEMO_METHODS, "--seeds", "0", "--output", "logs/demo",
                                      "--eval-period", "0", *argv], prog=prog))
    if code == 0:
        print(f"\ndemo wall time: {time.time() - start:.0f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
