"""``canu-bench`` (= ``tools/benchmark.py``, ``make bench``): every method against fast-reid's
baselines on one setting, with the same budget and several seeds; one JSON per run, the report
(mean ± sample std over seeds, paired differences with 95% intervals, the papers' claims) and plots
in results/<setting>/, and the papers' ablations as sweeps.

    canu-bench                                   # synthetic SynthA -> SynthB, every method, seeds 0 1 2
    canu-bench --methods source pseudo canu --seeds 0 1 2 3 4
    canu-bench --sweep MODEL.CANU.MU 0.05 0.1 0.3 0.5 1.0 --methods adv canu
    canu-bench --standard-sweeps                 # make bench: the main table, then every standard sweep
    canu-bench --setting M2D --seeds 0           # Market -> Duke (FASTREID_DATASETS, GPU)
    canu-bench --setting M2D --methods source mmt canu_mmt --seeds 0 --dry-run   # the runs, their length, a total
    canu-bench --report-only                     # re-make tables and plots
    canu-bench --opts SOLVER.MAX_EPOCH 4         # overrides for every run
    canu-bench --testbed configs/synthetic/testbeds/pretrained.yml   # a testbed: its data, pre-trained backbone
    canu-bench --jobs 2                          # two runs at once, each on its share of the cores

An interrupted benchmark resumes: finished runs (their JSON exists) are reused if they were made with
the same options, an unfinished one continues from its last checkpoint. Runs go in seed-major order.
"""
import argparse
import os
import sys
import time

import canu_plugin  # noqa: F401
from canu_plugin.bench import sweeps
from canu_plugin.bench.methods import SETTINGS, default_methods, plan
from canu_plugin.bench.parallel import run_plan, run_settings
from canu_plugin.bench.plots import sweep_plot, write_plots
from canu_plugin.bench.criteria import criteria
from canu_plugin.bench.report import load_records, write_report
from canu_plugin.bench.runner import Bench
from canu_plugin.errors import CanuError, user_errors


def parse_args(argv=None):
    """Command-line options of the benchmark."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--setting", default="synthetic", choices=sorted(SETTINGS))
    p.add_argument("--methods", nargs="+", default=None, help="default: every method the setting has")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--root", default=os.getenv("FASTREID_DATASETS", "datasets"), help="dataset root")
    p.add_argument("--output", default="results", help="results/<setting>/ goes here")
    p.add_argument("--eval-period", type=int, default=2, help="evaluate adapting methods every N epochs (curves)")
    p.add_argument("--sweep", nargs="+", metavar=("KEY", "VALUE"), help="a config key (or data.camera_shift / "
                   "data.id_camera_correlation) and its values: runs --methods at each value")
    p.add_argument("--standard-sweeps", action="store_true", help="after the main table, every standard sweep "
                   "(canu_plugin/bench/sweeps.py: STANDARD)")
    p.add_argument("--testbed", default=None, help="a synthetic testbed (configs/synthetic/testbeds/*.yml): its "
                   "data and pre-trained backbone, runs in <output>/testbeds/<name>-<hash>/ (docs/bench/testbed.md)")
    p.add_argument("--report-only", action="store_true", help="only re-make the tables and plots")
    p.add_argument("--re-evaluate", action="store_true", help="evaluate the final model of every finished run of "
                   "--methods x --seeds again with this version's evaluator and add the metrics its record lacks "
                   "(e.g. mAP_cn, cam_nmi); trains nothing, then re-makes the report")
    p.add_argument("--dry-run", action="store_true", help="print the main table's runs in order (what each starts "
                   "from, its config, epochs x iterations x batch, where it writes) and the totals; train nothing")
    p.add_argument("--opts", nargs="*", default=[], help="KEY VALUE overrides applied to every run (same budget)")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="up to N runs of the main table at once, each "
                   "pinned to cores // N cores with that many torch threads and no loader workers (N > 1 fixes "
                   "both: runs made with other --jobs are not reused); the sweeps' runs too (default 1)")
    args = p.parse_args(argv)
    if args.jobs < 1:
        raise CanuError(f"--jobs {args.jobs}: give the number of runs at once, 1 or more")
    if args.sweep is not None and len(args.sweep) < 2:
        raise CanuError("--sweep needs a key and at least one value, e.g. --sweep MODEL.CANU.MU 0.1 0.5")
    if args.dry_run and (args.sweep or args.standard_sweeps or args.testbed or args.report_only):
        raise CanuError("--dry-run lists the main table's runs: drop --sweep, --standard-sweeps, --testbed and "
                        "--report-only")
    if args.re_evaluate and (args.report_only or args.sweep or args.dry_run):
        raise CanuError("--re-evaluate evaluates the main table's finished runs: drop --report-only, --sweep and "
                        "--dry-run")
    return args


def prepare_data(setting, root):
    """Synthetic settings: generate the domains if absent (existing ones are used as they are);
    then check every dataset's folder."""
    from canu_plugin.data.datasets import check_dataset_layout
    names, generate = SETTINGS[setting]["datasets"], SETTINGS[setting].get("generate")
    if generate is not None and not all(os.path.isdir(os.path.join(root, n)) for n in names):
        generate(root)
    for name in names:
        check_dataset_layout(name, root)


def run_main(bench, methods, seeds, jobs=1):
    """Every planned run of the main table (reused when finished), up to ``jobs`` at once
    (:func:`~canu_plugin.bench.parallel.run_plan`); returns the number trained now."""
    before = len(load_records(bench.folder))
    run_plan(bench, plan(bench.setting, methods, seeds), jobs)
    return len(load_records(bench.folder)) - before


def report_sweep(bench, sweep):
    """The sweep's results.md (per value: a table of the swept and reference methods and their paired
    differences with 95% intervals) and plot; returns the sweep's records {value: records}."""
    from canu_plugin.bench.report import differences, differences_table, metric_table
    by_value = sweeps.load_sweep(bench, sweep.key, sweep.values, sweep.references)
    folder = os.path.join(bench.folder, "sweeps", sweep.key)
    os.makedirs(folder, exist_ok=True)
    plot = sweep_plot(by_value, sweep.methods, sweep.key, os.path.join(folder, "sweep.png"))
    cols = ("mAP", "nmi_cam", "nmi_cam_epochs", "lost_ids", "d_inter", "cam_probe", "disc_acc")
    shown = [*sweep.references, *sweep.methods]
    text = f"# Sweep of {sweep.key}\n\n"
    if sweep.references:
        text += (f"References (the main table's runs at every value; the key does not touch them): "
                 f"{', '.join(sweep.references)}.\n\n")
    for v in sweep.values:
        text += f"## {sweep.key} = {v}\n\n{metric_table(by_value[v], shown, cols)}\n\n"
        diffs = differences(by_value[v], shown)
        if diffs:
            text += f"Paired by seed, mean [95% t-interval]:\n\n{differences_table(diffs)}\n\n"
    if plot:
        text += f"![sweep]({os.path.basename(plot)})\n"
    with open(os.path.join(folder, "results.md"), "w") as f:
        f.write(text)
    return by_value


def use_testbed(b, args):
    """Point Bench ``b`` at a testbed (:mod:`canu_plugin.bench.candidates`): its folder, data and per-method
    overrides (the pre-trained backbone, made once and cached; its wall time printed apart). Returns the
    dataset root."""
    from canu_plugin.bench.candidates import prepare, testbed_folder
    from canu_plugin.bench.testbed import draw_root, load_testbed
    if args.setting != "synthetic":
        raise CanuError("--testbed describes the synthetic setting's data: drop --setting or use --setting synthetic")
    tb = load_testbed(args.testbed)
    b.folder, b.testbed = testbed_folder(args.output, tb), tb
    os.makedirs(b.folder, exist_ok=True)
    if args.report_only:
        return draw_root(b.folder, tb, args.seeds[0])
    stage = prepare(tb, b.folder, tuple(args.seeds))
    b.per_method, b.donors, b.draws = stage["per_method"], stage["donors"], stage["draws"]
    pre = stage["pretrain"]
    if pre:
        print(f"[bench] pre-trained backbone {pre['path']}: pre-training {pre['wall_s']:.0f} s"
              + (" (cached)" if pre["cached"] else "") + ", not counted in the runs' times")
    return stage["root"]


def recorded_command(prog, argv):
    """The command as the report records it: paths below the working folder made relative (no absolute
    path of this machine in results.md / summary.json)."""
    here = os.getcwd() + os.sep
    return " ".join([prog] + [os.path.relpath(w) if w.startswith(here) else w for w in argv])


def bench(argv=None, prog="canu-bench"):
    """Run the benchmark (or a sweep) and write the reports; ``prog`` is how the report's command starts.

    Raises:
        CanuError: bad arguments or data, a failed run (its log is named), a finished run made with
            other options.
    """
    args = parse_args(argv)
    root = os.path.abspath(args.root)
    os.environ["FASTREID_DATASETS"] = root
    folder = os.path.abspath(os.path.join(args.output, args.setting))
    b = Bench(args.setting, folder, args.eval_period, tuple(args.opts), **run_settings(args.jobs))
    methods = args.methods or default_methods(args.setting)
    if args.dry_run:
        from canu_plugin.bench.dry_run import dry_run
        dry_run(args.setting, methods, args.seeds, folder, root, tuple(args.opts))
        return 0
    todo = [sweeps.Sweep(args.sweep[0], tuple(args.sweep[1:]), tuple(methods))] if args.sweep else []
    if args.standard_sweeps:
        todo += [s for s in sweeps.STANDARD if all(m in b.methods for m in s.methods + s.references)]
    if args.testbed:
        root = use_testbed(b, args)
        folder = b.folder
    os.makedirs(folder, exist_ok=True)
    start = time.time()
    if args.re_evaluate:
        from canu_plugin.bench.reevaluate import re_evaluate
        print(f"[bench] {re_evaluate(b, methods, args.seeds)} run(s) re-evaluated in {time.time() - start:.0f} s")
    elif not args.report_only:
        prepare_data(args.setting, root)
        if not args.sweep:
            print(f"[bench] {run_main(b, methods, args.seeds, args.jobs)} run(s) done in {time.time() - start:.0f} s")
        for s in todo:
            sweeps.run_sweep(b, s.key, s.values, s.methods, args.seeds, root, args.jobs)
    reported = todo or [s for s in sweeps.STANDARD if os.path.isdir(os.path.join(folder, "sweeps", s.key))]
    sweep_records = {(s.key, float(v)): recs for s in reported for v, recs in report_sweep(b, s).items()}
    if args.sweep:
        print(f"[bench] sweep report: {os.path.join(folder, 'sweeps', args.sweep[0], 'results.md')}")
        return 0
    records = load_records(folder)
    if not records:
        raise CanuError(f"no finished run in {folder}: run without --report-only first")
    plots = write_plots(records, methods, folder)
    command = "" if args.report_only else recorded_command(prog, sys.argv[1:] if argv is None else argv)
    regime = criteria(records) if args.testbed else None  # a testbed's claims rest on its premises
    print("\n" + write_report(folder, methods, plots, command.strip(), sweep_records, regime))
    print(f"\n[bench] report: {os.path.join(folder, 'results.md')}")
    return 0


DEMO_METHODS = ["source", "pseudo", "canu", "acan_triplet", "acan_oce"]
DEMO_TESTBED = "configs/synthetic/testbeds/detail-060-demo.yml"  # the benchmark's testbed, small
DEMO_JOBS = 2  # two runs at once: on 2 cores, 1 thread and 0 loader workers each (docs/benchmark.md)


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
    """``make demo`` (``tools/demo.py``): the benchmark's testbed made small, on CPU.

    1. draws the testbed's SynthA (source, labelled) and SynthB (target, unlabelled) for seed 0, in
       Market-1501's layout, and pre-trains a backbone on its pre-training domains, both smaller and
       shorter than ``make bench``'s (:data:`DEMO_TESTBED`);
    2. trains fast-reid's supervised Baseline on SynthA and tests it on SynthB (direct transfer);
    3. adapts it to SynthB with cluster pseudo-labels, and with pseudo-labels + CANU's camera
       discriminator conditioned on the pseudo-identity centroid;
    4. trains ACAN on SynthB's intra-camera labels, triplet only and with OCE;
    5. prints the tables and the paths of its plots (results in ``logs/demo/testbeds/``).

    Five methods, seed 0, two runs at once; finished runs are not redone. Further arguments (``--opts``
    ...) are passed on. The full benchmark is ``make bench``.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    start = time.time()
    code = _as_command(lambda: bench(["--testbed", DEMO_TESTBED, "--jobs", str(DEMO_JOBS), "--methods", *DEMO_METHODS,
                                      "--seeds", "0", "--output", "logs/demo", "--eval-period", "0", *argv], prog=prog))
    if code == 0:
        print(f"\ndemo wall time: {time.time() - start:.0f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
