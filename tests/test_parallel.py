"""canu-bench --jobs N: the scheduler (dependencies, job limit, failure, Ctrl-C, pinning), the runs' threads and
loader workers in their identity, and two real tiny runs side by side that repeat their numbers alone."""
import json
import os
import signal
import subprocess
import threading
import time

import pytest

from canu_plugin.bench import child_settings as settings_mod, runner
from canu_plugin.bench.methods import plan
from canu_plugin.bench.parallel import core_shares, run_plan, run_settings, schedule
from canu_plugin.errors import CanuError

LINUX = hasattr(os, "sched_setaffinity")


class Recorder:
    """A fake ``run_one``: sleeps, and books each run's start, end and cores, and the most runs at once."""

    def __init__(self, sleep=0.15, fail=()):
        self.sleep, self.fail, self.lock = sleep, set(fail), threading.Lock()
        self.start, self.end, self.cores, self.now, self.most = {}, {}, {}, 0, 0

    def __call__(self, run, cores):
        key = (run[0], run[1])
        with self.lock:
            self.start[key], self.cores[key] = time.monotonic(), cores
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(self.sleep)
        with self.lock:
            self.now -= 1
            self.end[key] = time.monotonic()
        if key in self.fail:
            raise CanuError(f"{key} failed")


def test_core_shares_and_run_settings():
    assert core_shares(2, [0, 1, 2, 3]) == [(0, 1), (2, 3)]
    assert core_shares(2, [3, 0, 1]) == [(0,), (1,)]  # cores // jobs each; the rest unused
    assert core_shares(3, [0, 1]) == [(0,), (1,), (0,)]  # more jobs than cores: at least one core each
    assert run_settings(1) == {} and run_settings(2, [0, 1, 2, 3]) == {"threads": 2, "workers": 0}
    assert run_settings(4, [0, 1]) == {"threads": 1, "workers": 0}


def test_scheduler_respects_dependencies_and_the_job_limit():
    runs = plan("synthetic", ["pseudo", "mmt", "acan_oce", "upper"], [0, 1])
    rec, lines = Recorder(), []
    schedule(runs, rec, 2, log=lines.append)
    assert set(rec.end) == {(m, s) for m, s, _ in runs} and rec.most == 2
    for m, s, deps in runs:
        assert all(rec.start[(m, s)] >= rec.end[tuple(d)] for d in deps.values()), (m, s)
    assert len(lines) == len(runs) and lines[0].startswith("[jobs] start source_s0 on core(s) ")
    assert lines[1].startswith("[jobs] start source_b_s100 ")  # launched in plan order among the ready runs
    overlapping = [(a, b) for a in rec.start for b in rec.start if a < b
                   and rec.start[a] < rec.end[b] and rec.start[b] < rec.end[a]]
    if len(core_shares(2)) == 2 and core_shares(2)[0] != core_shares(2)[1]:
        assert overlapping and all(rec.cores[a] != rec.cores[b] for a, b in overlapping)  # a slot each
    one = Recorder(sleep=0.01)
    schedule(runs, one, 1, log=lambda m: None)
    assert one.most == 1 and sorted(one.start, key=one.start.get) == [(m, s) for m, s, _ in runs]  # plan order


def test_scheduler_stops_starting_after_a_failure_and_reraises_it_after_the_running_ones():
    runs = [("a", 0, {}), ("b", 0, {}), ("c", 0, {}), ("d", 0, {"x": ("a", 0)})]
    rec = Recorder(sleep=0.2, fail={("a", 0)})
    rec_b = {"sleep": 0.5}

    def run_one(run, cores):
        if run[0] == "b":
            time.sleep(rec_b["sleep"])
        return rec(run, cores)

    with pytest.raises(CanuError, match="failed"):
        schedule(runs, run_one, 2, log=lambda m: None)
    assert set(rec.start) == {("a", 0), ("b", 0)} and ("b", 0) in rec.end  # c, d never started; b finished
    with pytest.raises(CanuError, match="wait for one another"):
        schedule([("a", 0, {"x": ("b", 0)}), ("b", 0, {"x": ("a", 0)})], rec, 2, log=lambda m: None)


def test_ctrl_c_interrupts_the_children_and_waits_for_the_running_runs():
    rec, called = Recorder(sleep=1.0), []
    runs = [(m, 0, {}) for m in "abcd"]

    def interrupt_when_two_run():  # not after a fixed delay: a loaded machine may start the runs late
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with rec.lock:
                if len(rec.start) == 2 and not rec.end:
                    break
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    # Python's own Ctrl-C handler, whatever this process inherited: a shell starts background jobs
    # (`pytest ... &`, nohup) with SIGINT ignored, and Python then keeps it ignored
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Thread(target=interrupt_when_two_run)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            schedule(runs, rec, 2, log=lambda m: None, on_interrupt=lambda: called.append(time.monotonic()))
    finally:
        timer.join()
        signal.signal(signal.SIGINT, old)
    assert called and set(rec.start) == set(rec.end) == {("a", 0), ("b", 0)}  # waited for; nothing new started
    sleeper = subprocess.Popen(["sleep", "30"],  # with SIGINT's default action, whatever this process has
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    with runner._CHILDREN_LOCK:
        runner._CHILDREN.add(sleeper)
    try:
        runner.stop_children(grace=5)
        assert sleeper.wait(5) == -signal.SIGINT
    finally:
        with runner._CHILDREN_LOCK:
            runner._CHILDREN.discard(sleeper)


@pytest.mark.skipif(not LINUX, reason="CPU affinity is Linux's")
def test_a_run_and_the_processes_it_starts_are_pinned_to_its_share_of_the_cores():
    seen = {}

    def run_one(run, cores):
        status = subprocess.run(["cat", "/proc/self/status"], capture_output=True, text=True).stdout
        allowed = next(ln.split(":")[1].strip() for ln in status.splitlines() if ln.startswith("Cpus_allowed_list"))
        seen[run[0]] = (cores, allowed)
        time.sleep(0.1)

    schedule([("a", 0, {}), ("b", 0, {})], run_one, 2, log=lambda m: None)
    for cores, allowed in seen.values():
        expect = ",".join(map(str, cores)) if len(cores) == 1 else f"{cores[0]}-{cores[-1]}"
        assert allowed == expect
    assert os.sched_getaffinity(0) == set(core_shares(1)[0])  # this (main) thread is not pinned


def _fake_execute(calls):
    def fake(setting, key, method, seed, opts, planned, folder, log=print, env=None):
        calls.append({"opts": list(opts), "planned": planned, "env": env})
        os.makedirs(os.path.join(folder, "runs", f"{key}_s{seed}"), exist_ok=True)
        open(os.path.join(folder, "runs", f"{key}_s{seed}", "model_final.pth"), "w").close()  # as a finished run
        record = {"method": key, "seed": seed, "identity": planned, "final": {"mAP": 1.0}}
        with open(os.path.join(folder, f"{key}_s{seed}.json"), "w") as f:
            json.dump(record, f)
        return record
    return fake


def test_a_run_made_with_other_threads_or_workers_is_refused(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(runner, "execute", _fake_execute(calls))
    folder = str(tmp_path)
    runner.Bench("synthetic", folder, threads=1, workers=0).ensure("source", 0, {})
    first = calls[-1]
    assert first["planned"]["threads"] == 1 and first["planned"]["workers"] == 0
    assert first["opts"][-4:-2] == ["DATALOADER.NUM_WORKERS", "0"] and "DATALOADER.NUM_WORKERS" not in first[
        "planned"]["opts"]  # the effective value is the identity's "workers", not an override
    assert first["env"]["OMP_NUM_THREADS"] == first["env"]["MKL_NUM_THREADS"] == "1"
    runner.Bench("synthetic", folder, threads=1, workers=0).ensure("source", 0, {})  # same settings: reused
    assert len(calls) == 1
    with pytest.raises(CanuError, match=r"other options.*threads 1 -> 2.*--jobs"):
        runner.Bench("synthetic", folder, threads=2, workers=0).ensure("source", 0, {})
    with pytest.raises(CanuError, match=r"other options.*workers 0 -> 2"):  # the config's 2 workers
        runner.Bench("synthetic", folder, threads=1).ensure("source", 0, {})
    assert len(calls) == 1


def test_a_record_from_before_the_settings_counts_as_made_with_the_defaults_of_then(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(runner, "execute", _fake_execute(calls))
    monkeypatch.setattr(settings_mod, "default_threads", lambda: 2)  # the machine's cores
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    folder = str(tmp_path)
    runner.Bench("synthetic", folder).ensure("source", 0, {})
    record = json.loads((tmp_path / "source_s0.json").read_text())
    assert {k: record["identity"][k] for k in ("threads", "workers")} == {"threads": 2, "workers": 2}
    for k in ("threads", "workers"):
        del record["identity"][k]
    (tmp_path / "source_s0.json").write_text(json.dumps(record))
    assert runner.Bench("synthetic", folder).ensure("source", 0, {}) == record  # --jobs 1, as before: reused
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    runner.Bench("synthetic", folder).ensure("source", 0, {})  # the same thread count, asked for: reused
    assert len(calls) == 1
    with pytest.raises(CanuError, match=r"threads 2 -> 1.*workers 2 -> 0"):
        runner.Bench("synthetic", folder, **run_settings(2, [0, 1])).ensure("source", 0, {})
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with pytest.raises(CanuError, match=r"threads 2 -> 1"):
        runner.Bench("synthetic", folder).ensure("source", 0, {})
    marker = tmp_path / "runs" / "upper_s0" / "bench_run.json"  # an unfinished run started before: resumable
    marker.parent.mkdir(parents=True)
    planned = runner.identity(runner.SETTINGS["synthetic"]["methods"]["upper"], ["x", "OUTPUT_DIR", "o"], folder)
    marker.write_text(json.dumps(planned))
    then = {"threads": 2, "workers": 2}
    settings_mod.upgrade_marker(str(marker.parent), {**planned, "threads": 1, "workers": 0}, then)
    assert "threads" not in json.loads(marker.read_text())  # other settings: left for execute to refuse
    settings_mod.upgrade_marker(str(marker.parent), {**planned, **then}, then)
    assert json.loads(marker.read_text())["threads"] == 2


TINY = ["INPUT.SIZE_TRAIN", "[32,16]", "INPUT.SIZE_TEST", "[32,16]", "SOLVER.IMS_PER_BATCH", "16",
        "SOLVER.MAX_EPOCH", "1", "DATALOADER.NUM_WORKERS", "0", "DATASETS.TESTS", '("SynthB",)']


def test_two_tiny_runs_side_by_side_repeat_their_numbers_alone(use_synth_root, tmp_path):
    """--jobs 2: two real source runs at once, each on one core with one thread and no loader workers, give
    the numbers each gives alone with one thread and no workers."""
    runs = plan("synthetic", ["source"], [0, 1])
    lines, records = [], {}
    for name, jobs in (("side_by_side", 2), ("alone", 1)):
        bench = runner.Bench("synthetic", str(tmp_path / name), 0, tuple(TINY), lines.append, threads=1, workers=0)
        os.makedirs(bench.folder)
        t0 = time.time()
        run_plan(bench, runs, jobs)
        lines.append(f"{name}: {time.time() - t0:.1f} s")
        records[name] = {s: json.loads((tmp_path / name / f"source_s{s}.json").read_text()) for s in (0, 1)}
    print("\n".join(lines))
    first_done = next(i for i, ln in enumerate(lines) if " done in " in ln)
    assert sum(ln.startswith("[jobs] start source_s") for ln in lines[:first_done]) == 2  # side by side
    for s in (0, 1):
        together, alone = records["side_by_side"][s], records["alone"][s]
        assert together["identity"] == alone["identity"] and together["identity"]["threads"] == 1
        assert together["final"] == alone["final"], s  # every final number, bit for bit
        log = (tmp_path / "side_by_side" / "runs" / f"source_s{s}" / "bench_stdout.log").read_text()
        assert "torch threads 1, loader workers 0" in log
    assert records["alone"][0]["final"] != records["alone"][1]["final"]  # two different runs


def test_jobs_option_and_finished_runs_checked_before_scheduling(tmp_path, monkeypatch):
    from canu_plugin.cli.bench import parse_args
    from canu_plugin.cli.testbed import parse_args as testbed_args
    assert parse_args([]).jobs == 1 and parse_args(["--jobs", "2"]).jobs == 2
    assert testbed_args(["--jobs", "3"]).jobs == 3
    with pytest.raises(CanuError, match="--jobs 0"):
        parse_args(["--jobs", "0"])
    calls, lines = [], []
    monkeypatch.setattr(runner, "execute", _fake_execute(calls))
    bench = runner.Bench("synthetic", str(tmp_path), log=lines.append, **run_settings(2, [0, 1]))
    bench.ensure("source", 0, {})
    run_plan(bench, plan("synthetic", ["pseudo", "canu"], [0]), 2)
    assert len(calls) == 3
    assert lines[0] == "[jobs] 2 run(s), up to 2 at once, 1 torch thread(s) and 0 loader worker(s) each"
    assert sorted(ln.split()[2] for ln in lines[1:]) == ["canu_s0", "pseudo_s0"]  # source_s0: reused, not scheduled


def test_a_source_model_whose_weights_are_gone_is_trained_again_and_must_repeat_its_record(tmp_path, monkeypatch):
    """A results folder restored from its records only: the runs still to do need their source model's weights,
    so it is trained again first, and must give its recorded mAP (else the new rows would pair with another)."""
    calls, lines, score = [], [], {"mAP": 1.0}

    def fake(setting, key, method, seed, opts, planned, folder, log=print, env=None):
        calls.append(f"{key}_s{seed}")
        os.makedirs(os.path.join(folder, "runs", f"{key}_s{seed}"), exist_ok=True)
        open(os.path.join(folder, "runs", f"{key}_s{seed}", "model_final.pth"), "w").close()
        record = {"method": key, "seed": seed, "identity": planned, "final": dict(score)}
        with open(os.path.join(folder, f"{key}_s{seed}.json"), "w") as f:
            json.dump(record, f)
        return record
    monkeypatch.setattr(runner, "execute", fake)
    bench = runner.Bench("synthetic", str(tmp_path), log=lines.append, threads=1, workers=0)
    bench.ensure("source", 0, {})
    weights = tmp_path / "runs" / "source_s0" / "model_final.pth"
    run_plan(bench, plan("synthetic", ["pseudo"], [0]), 1)
    assert calls == ["source_s0", "pseudo_s0"]  # weights there: nothing trained again
    weights.unlink()
    run_plan(bench, plan("synthetic", ["pseudo"], [0]), 1)
    assert calls[-1] == "pseudo_s0" and len(calls) == 2  # nothing left to do starts from it: not trained again
    run_plan(bench, plan("synthetic", ["canu"], [0]), 1)
    assert calls[2:] == ["source_s0", "canu_s0"] and weights.is_file() and "weights are gone" in lines[-1]
    assert not list(tmp_path.glob("*.before-retrain"))
    weights.unlink()
    score["mAP"] = 2.0  # another machine: the source model does not repeat
    with pytest.raises(CanuError, match="source_s0 trained again gave mAP 2.00, its record 1.00"):
        run_plan(bench, plan("synthetic", ["adv"], [0]), 1)
    assert calls[-1] == "source_s0" and not weights.exists()  # adv never started from the other model
    assert json.loads((tmp_path / "source_s0.json").read_text())["final"]["mAP"] == 1.0  # the record kept
