"""Process groups: start-up for fastreid's ``launch`` on machines without CUDA, and the small
DDP helpers the engine shares (wrap / unwrap a model, broadcast an object from rank 0).

fastreid's ``_distributed_worker`` asserts CUDA and always uses NCCL. The wrapper built here uses
it unchanged when CUDA devices are present, and otherwise starts the same process group with the
gloo backend (what torch.distributed uses for CPU tensors), so ``--num-gpus N`` runs N CPU
processes and ``--num-machines``/``--dist-url`` keep their meaning.
"""
import importlib
import logging

import torch
import torch.distributed as dist
from fastreid.utils import comm


def _gloo_worker(local_rank, main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, args):
    global_rank = machine_rank * num_gpus_per_machine + local_rank
    try:
        dist.init_process_group(backend="gloo", init_method=dist_url,
                                world_size=world_size, rank=global_rank)
    except Exception:
        logging.getLogger(__name__).error("Process group URL: {}".format(dist_url))
        raise
    comm.synchronize()
    num_machines = world_size // num_gpus_per_machine
    for i in range(num_machines):
        ranks_on_i = list(range(i * num_gpus_per_machine, (i + 1) * num_gpus_per_machine))
        pg = dist.new_group(ranks_on_i)
        if i == machine_rank:
            comm._LOCAL_PROCESS_GROUP = pg
    main_func(*args)


_ORIGINAL = {}


def _worker(local_rank, *rest):
    """Drop-in for fastreid's ``_distributed_worker``: NCCL with CUDA, gloo without; once the main
    function has returned, :func:`_finish`."""
    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        _ORIGINAL["worker"](local_rank, *rest)
    else:
        _gloo_worker(local_rank, *rest)
    _finish()


def _finish():
    """End the process group when a rank's work is done: wait for every rank, then destroy it.

    fast-reid's worker leaves the group to the interpreter's exit, where torch warns that it was not
    destroyed (NCCL) and the backend's threads can be torn down in the wrong order: a gloo rank once
    aborted there ("terminate called without an active exception", SIGABRT) after a finished run.
    Not called when the main function raised (the other ranks may never reach the barrier).
    """
    if dist.is_available() and dist.is_initialized():
        comm.synchronize()
        dist.destroy_process_group()
        comm._LOCAL_PROCESS_GROUP = None
        comm._get_global_gloo_group.cache_clear()


def install():
    """Replace ``fastreid.engine.launch._distributed_worker`` by :func:`_worker` (idempotent).

    Returns:
        bool: True when the replacement was made by this call.
    """
    launch_mod = importlib.import_module("fastreid.engine.launch")  # the package shadows it
    if launch_mod._distributed_worker is _worker:
        return False
    _ORIGINAL["worker"] = launch_mod._distributed_worker
    launch_mod._distributed_worker = _worker
    return True


def unwrap(model):
    """The module inside a DistributedDataParallel wrapper (the model itself when not wrapped)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def wrap(module):
    """``module`` wrapped in DistributedDataParallel as fast-reid wraps its model (one device per
    process, ``broadcast_buffers=False``); the module itself in a single process."""
    if comm.get_world_size() == 1:
        return module
    from fastreid.engine import defaults as fastreid_defaults  # its DDP: device_ids dropped on CPU (compat)
    return fastreid_defaults.DistributedDataParallel(module, device_ids=[comm.get_local_rank()],
                                                     broadcast_buffers=False)


def broadcast_object(obj):
    """Rank 0's ``obj`` on every rank (torch.distributed's object broadcast); ``obj`` in one process."""
    if comm.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sync_buffers(*modules):
    """Set every buffer (BatchNorm statistics, counters) of ``modules`` to rank 0's, in place.

    fast-reid wraps models with ``broadcast_buffers=False``: each process keeps the BatchNorm
    statistics of its own batches, the checkpoint holds rank 0's only, and features extracted by
    another rank would be computed with statistics rank 0 does not have.
    """
    if comm.get_world_size() == 1:
        return
    for module in modules:
        for buf in unwrap(module).buffers():
            dist.broadcast(buf.data, src=0)
