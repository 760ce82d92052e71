"""``--jobs N``: up to N benchmark runs at once, each on its own share of the CPU cores.

On a small CPU machine two runs side by side, each with one torch thread and no loader workers, make
more runs per hour than one run with every core (2 cores: 1.5x). But seeded runs repeat bit for bit only
with the same thread count and loader workers, so ``--jobs N > 1`` fixes both for every run: its share of
the cores (cores // N, at least 1) as torch threads, and ``DATALOADER.NUM_WORKERS 0``
(:func:`run_settings`, recorded in each run's identity: :mod:`.child_settings`). ``--jobs 1`` runs as
before, one run after another with the environment's threads and the config's workers.

:func:`schedule` starts a run only once the runs it starts from (its ``deps`` in :func:`.methods.plan`)
have finished, pins each run to its share of the cores (the worker thread's CPU affinity, which the
training process it starts inherits), starts nothing after a run fails and re-raises that failure once
the running runs have finished. On Ctrl-C it interrupts the running children and waits for them: the
finished runs are kept and an interrupted one resumes from its last checkpoint.
"""
import json
import os
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from canu_plugin.bench.runner import run_name, stop_children
from canu_plugin.errors import CanuError
from canu_plugin.threads import usable_cores


def core_shares(jobs, cores=None):
    """The cores of each of ``jobs`` slots: consecutive blocks of cores // jobs (at least 1) of ``cores``
    (default: the cores this process may use); with more jobs than cores, slots share cores.

    Returns:
        list of ``jobs`` tuples of core ids.
    """
    cores = sorted(cores) if cores is not None else usable_cores()
    share = max(1, len(cores) // jobs)
    return [tuple(cores[(i * share + j) % len(cores)] for j in range(share)) for i in range(jobs)]


def run_settings(jobs, cores=None):
    """:class:`~.runner.Bench`'s ``threads`` and ``workers`` for ``--jobs``: {} for 1 (as before), else each
    run's share of the cores as torch threads and no loader workers."""
    if jobs <= 1:
        return {}
    return {"threads": len(core_shares(jobs, cores)[0]), "workers": 0}


def _cores_text(cores):
    return ",".join(map(str, cores))


def _pinned(run_one, run, cores):
    """``run_one(run, cores)`` in this worker thread pinned to ``cores``: a process it starts inherits them."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores)  # 0: the calling thread only, on Linux
    return run_one(run, cores)


class _Scheduler:
    """The state of one :func:`schedule` call: waiting runs, running ones (future -> run, slot), the free
    slots, the finished runs and the first failure."""

    def __init__(self, runs, run_one, jobs, log, cores):
        self.waiting, self.run_one, self.log = list(runs), run_one, log
        self.planned = {(m, s) for m, s, _ in runs}
        self.shares = core_shares(jobs, cores)
        self.free, self.running, self.done, self.failure = list(range(jobs)), {}, set(), None

    def ready(self, run):
        """Whether every dependency of ``run`` that is in this schedule has finished."""
        return all(tuple(dep) not in self.planned or tuple(dep) in self.done for dep in run[2].values())

    def launch(self, pool):
        """Start the first waiting runs that are ready, in plan order, while slots are free."""
        for run in list(self.waiting):
            if not self.free or self.failure is not None:
                return
            if self.ready(run):
                self.waiting.remove(run)
                slot = self.free.pop(0)
                cores = self.shares[slot]
                self.log(f"[jobs] start {run_name(run[0], run[1])} on core(s) {_cores_text(cores)}")
                self.running[pool.submit(_pinned, self.run_one, run, cores)] = (run, slot)

    def collect(self, futures):
        """Book the finished ``futures``: free their slots, note the runs done and the first failure."""
        for future in futures:
            run, slot = self.running.pop(future)
            self.free.append(slot)
            error = future.exception()
            if error is None:
                self.done.add((run[0], run[1]))
            elif self.failure is None:
                self.failure = error
                if self.running:
                    self.log(f"[jobs] {run_name(run[0], run[1])} failed: starting no other run, waiting for "
                             f"{len(self.running)} running one(s)")


def schedule(runs, run_one, jobs, log=print, cores=None, on_interrupt=stop_children):
    """Do ``runs`` up to ``jobs`` at once, each after the runs it starts from.

    Args:
        runs: [(method, seed, deps)] as :func:`.methods.plan` gives them (deps: {role: (method, seed)}); a
            dependency not in ``runs`` counts as finished; runs start in this order as they become ready.
        run_one: ``run_one(run, cores)`` does one run, in a worker thread pinned to ``cores``.
        cores: the cores to share out (default: this process's); log: where the start lines go;
        on_interrupt: called on Ctrl-C before waiting for the running runs (default: interrupt the
            training processes, :func:`.runner.stop_children`).
    Raises:
        the first run's exception once the running runs have finished (no run starts after it); CanuError
        when runs wait for one another in a circle; KeyboardInterrupt after the running runs stopped.
    """
    state = _Scheduler(runs, run_one, jobs, log, cores)
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="bench-job") as pool:
        try:
            while state.waiting or state.running:
                state.launch(pool)
                if not state.running:
                    break
                finished, _ = wait(list(state.running), return_when=FIRST_COMPLETED)
                state.collect(finished)
        except KeyboardInterrupt:
            if on_interrupt is not None:
                on_interrupt()
            wait(list(state.running))
            raise
    if state.failure is not None:
        raise state.failure
    if state.waiting:
        raise CanuError(f"runs wait for one another: {[run_name(m, s) for m, s, _ in state.waiting]}")


def _weights(bench, key, seed):
    return os.path.join(bench.folder, "runs", run_name(key, seed), "model_final.pth")


def restore_weights(bench, needed):
    """Train again the finished runs of ``bench``'s folder in ``needed`` ((method, seed) pairs that runs still to
    do start from) whose final weights are gone (a results folder restored from its records only, e.g. committed
    records on a new machine). A seeded run repeats exactly with the same threads and loader workers on the same
    kind of machine: the new mAP must be the record's, else the record is put back and CanuError says so (the new
    rows would start from another source model than the recorded ones they are paired with)."""
    lost = {dep for dep in needed if bench.finished(*dep) and not os.path.isfile(_weights(bench, *dep))}
    for key, seed in sorted(lost, key=lambda d: d[1]):
        path = os.path.join(bench.folder, run_name(key, seed) + ".json")
        with open(path) as f:
            old = json.load(f)
        os.replace(path, path + ".before-retrain")
        bench.log(f"[bench] {run_name(key, seed)}: its final weights are gone; training it again")
        new = bench.ensure(key, seed, {})
        if abs(new["final"]["mAP"] - old["final"]["mAP"]) > 1e-4:
            os.replace(path + ".before-retrain", path)
            os.remove(_weights(bench, key, seed))
            raise CanuError(f"{run_name(key, seed)} trained again gave mAP {new['final']['mAP']:.2f}, its record "
                            f"{old['final']['mAP']:.2f}: this machine does not repeat it, so runs started from it "
                            "would not pair with the recorded ones; run them where the record was made, or use "
                            "another --output")
        os.remove(path + ".before-retrain")


def run_plan(bench, runs, jobs=1):
    """Every run of ``runs`` (:func:`.methods.plan`) through ``bench.ensure``: one after another for ``jobs``
    1 (as before --jobs), else the finished ones first (their identity checked, here) and then the rest
    with :func:`schedule`. ``bench``'s threads and workers must be :func:`run_settings`'s for ``jobs``.
    Finished source models whose weights are gone are trained again first (:func:`restore_weights`)."""
    def one(run, cores=None):
        key, seed, deps = run
        return bench.ensure(key, seed, {role: run_name(*dep) for role, dep in deps.items()})

    restore_weights(bench, [dep for key, seed, deps in runs if not bench.finished(key, seed) for dep in deps.values()])

    if jobs <= 1:
        for run in runs:
            one(run)
        return
    todo = []
    for run in runs:
        if bench.finished(run[0], run[1]):
            one(run)  # reused, or refused when made with other options or settings
        else:
            todo.append(run)
    if todo:
        bench.log(f"[jobs] {len(todo)} run(s), up to {jobs} at once, {bench.threads} torch thread(s) and "
                  f"{bench.workers} loader worker(s) each")
        schedule(todo, one, jobs, bench.log)


__all__ = ["core_shares", "run_settings", "schedule", "restore_weights", "run_plan"]
