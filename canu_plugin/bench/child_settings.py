"""The torch threads and loader workers of a benchmark run's child process (``canu-bench --jobs``), as part
of the run's identity (:func:`.runner.identity`): seeded runs repeat bit for bit only with the same thread
count and loader workers, so a finished run made with other settings is not reused.
"""
import json
import os

from canu_plugin.checkpoint import atomic_write
from canu_plugin.resources import config_path
from canu_plugin.threads import THREAD_VARS, default_threads, env_threads


def config_workers(config, opts):
    """``DATALOADER.NUM_WORKERS`` of shipped config ``config`` with the overrides ``opts``."""
    from canu_plugin.engine.setup import merged_cfg
    return int(merged_cfg(config_path(config, user_paths=False), list(opts)).DATALOADER.NUM_WORKERS)


def child_settings(config, opts, env=None, threads=None, workers=None):
    """The torch threads and loader workers of a run's child process, and how to start it with them.

    Seeded runs repeat bit for bit only with the same threads and workers, so both are part of the run's
    identity. A record made before they were recorded has neither: it is taken as made with that time's
    defaults (``legacy``: torch's default threads here, i.e. the cores; the config's NUM_WORKERS), so it is
    reused by a ``--jobs 1`` run with those settings and refused by any other (e.g. ``--jobs 2``).

    Args:
        opts: the run's overrides (:func:`.runner.run_opts`, OUTPUT_DIR last); env: the child's environment (None:
            this process's); threads / workers: None = as before ``--jobs`` (the environment's thread count,
            else torch's default; the config's workers), else fixed: the thread variables set to ``threads``,
            ``DATALOADER.NUM_WORKERS workers`` added before OUTPUT_DIR.
    Returns:
        (settings {"threads", "workers"}, legacy {"threads", "workers"}, env, opts) for the child.
    """
    own = config_workers(config, opts[:-2])
    legacy = {"threads": default_threads(), "workers": own}
    settings = {"threads": threads or env_threads(os.environ if env is None else env) or default_threads(),
                "workers": own if workers is None else int(workers)}
    if threads:
        env = {**(os.environ if env is None else env), **{name: str(threads) for name in THREAD_VARS}}
    if workers is not None:
        opts = [*opts[:-2], "DATALOADER.NUM_WORKERS", str(workers), *opts[-2:]]
    return settings, legacy, env, opts


def with_legacy(recorded, legacy):
    """``recorded`` (an identity) with the settings it lacks taken from ``legacy`` (:func:`child_settings`)."""
    if not isinstance(recorded, dict) or not legacy:
        return recorded
    return {**legacy, **recorded}


def upgrade_marker(out_dir, planned, legacy):
    """An unfinished run's ``bench_run.json`` from before the settings were recorded, that matches ``planned``
    with ``legacy``'s settings: rewritten with them (so that :func:`.runner.execute` resumes it)."""
    marker = os.path.join(out_dir, "bench_run.json")
    if not os.path.isfile(marker):
        return
    with open(marker) as f:
        recorded = json.load(f)
    if isinstance(recorded, dict) and "threads" not in recorded and with_legacy(recorded, legacy) == planned:
        atomic_write(marker, lambda f: json.dump(planned, f, indent=1), mode="w")


__all__ = ["config_workers", "child_settings", "with_legacy", "upgrade_marker"]
