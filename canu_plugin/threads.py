"""Torch's CPU threads in a training process: what the environment asks for, what torch takes by default,
and making a child honour the count that ``canu-bench --jobs N`` gives it (seeded runs repeat exactly only
with the same thread count)."""
import os

import torch

# torch takes its intra-op thread count from MKL_NUM_THREADS, else OMP_NUM_THREADS (MKL's wins when both are set)
THREAD_VARS = ("MKL_NUM_THREADS", "OMP_NUM_THREADS")


def env_threads(env):
    """The thread count torch takes from ``env`` (a mapping), or None when neither variable holds a positive
    integer."""
    for name in THREAD_VARS:
        value = str(env.get(name, "")).strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None


def usable_cores():
    """The CPU cores this process may run on (its affinity mask where the system has one), sorted."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(os.getpid()))  # the process's (main thread's) mask, from any thread
    return list(range(os.cpu_count() or 1))


def default_threads():
    """torch's thread count here without MKL_NUM_THREADS / OMP_NUM_THREADS: this process's own when neither is
    set, else the cores this process may use (torch's default on a machine without hyper-threads)."""
    if env_threads(os.environ) is None:
        return torch.get_num_threads()
    return len(usable_cores())


def apply_env_threads():
    """Make torch use the thread count the environment asks for (torch reads it at start already; this also
    undoes a library that changed it). Returns torch's thread count."""
    wanted = env_threads(os.environ)
    if wanted is not None and torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)
    return torch.get_num_threads()


__all__ = ["THREAD_VARS", "env_threads", "usable_cores", "default_threads", "apply_env_threads"]
