"""Make fastreid 1.4.0 run on Python 3.11, torch 2.x and machines without a GPU.

fastreid 1.4.0 (the last PyPI release) was written for Python 3.8 / torch 1.13 / CUDA. This module
holds every fix that replaces part of fast-reid (the table below); everything else extends
fast-reid through subclasses, registries and hooks, and sets two of its module-level settings
through named functions: the dataset root (``data/root.py``) and a log filter that drops the
traceback of user errors (``engine/trainer.py``). :func:`apply` runs once, on ``import
canu_plugin``, and each fix is applied only where the breakage is present (a fixed fast-reid is left alone).

| fix                      | fast-reid file it serves                     | breakage                                         |
|--------------------------|----------------------------------------------|--------------------------------------------------|
| ``torch._six``           | ``fastreid/data/build.py``                   | module removed in torch 2.0                      |
| ``collections.Mapping``  | ``fastreid/data/build.py``, ``evaluation/testing.py`` | aliases removed in Python 3.10          |
| ``DataLoaderX``          | ``fastreid/data/build.py`` (``data_utils.py``)| creates CUDA streams unconditionally           |
| evaluator cython build   | ``fastreid/evaluation/reid_evaluation.py``   | runs ``make`` inside site-packages at run time   |
| ``launch`` on CPU        | ``fastreid/engine/launch.py``                | asserts CUDA, hard-codes the NCCL backend        |
| DDP on CPU               | ``fastreid/engine/defaults.py``              | passes ``device_ids=[rank]`` for a CPU model     |
| ``zero_grad``            | ``fastreid/solver/build.py`` (``utils/params.py``) | torch 2.0 sets the flat grad buffer to None: no update |
| ``torch.load``           | ``fastreid/utils/checkpoint.py``             | ``weights_only=True`` default since torch 2.6    |
| atomic checkpoints       | ``fastreid/utils/checkpoint.py``             | files written in place: a kill leaves a torn file|
| unreadable image         | ``fastreid/data/common.py``                  | PIL error deep in a loader worker                |
| in-place preprocess      | ``fastreid/modeling/meta_arch/baseline.py``  | flip test normalises the flipped images twice    |
| progress line            | ``fastreid/utils/events.py``                 | ZeroDivisionError in runs of < 4 iterations      |
| offline ImageNet weights | ``fastreid/modeling/backbones/resnet.py`` & co. | needs gdown even for a cached file; a checkpoint as ``PRETRAIN_PATH`` loads as nothing |
"""
import collections
import collections.abc
import functools
import importlib
import logging
import sys
import types
import warnings

import torch

from canu_plugin.errors import unreadable_image

logger = logging.getLogger(__name__)

_APPLIED = []  # names of the fixes that were needed on this installation


def _fix_torch_six():
    """``torch._six`` (string_classes, inf) was removed in torch 2.0; fastreid.data.build imports it."""
    try:
        importlib.import_module("torch._six")
        return False
    except ImportError:
        six = types.ModuleType("torch._six")
        six.string_classes = (str, bytes)
        six.int_classes = int
        six.inf = float("inf")
        six.container_abcs = collections.abc
        sys.modules["torch._six"] = six
        torch._six = six
        return True


def _fix_collections_aliases():
    """``collections.Mapping`` & co. were removed in Python 3.10; fastreid imports them."""
    names = ("Mapping", "MutableMapping", "Sequence", "Iterable", "Callable")
    missing = [n for n in names if not hasattr(collections, n)]
    for n in missing:
        setattr(collections, n, getattr(collections.abc, n))
    return bool(missing)


def _fix_dataloaderx():
    """``DataLoaderX`` builds a CUDA stream in ``__init__``; use a plain DataLoader without CUDA."""
    import fastreid.data.build as build
    from fastreid.data.data_utils import DataLoaderX

    if getattr(build.DataLoaderX, "_canu_compat", False):
        return False

    class CompatDataLoaderX(DataLoaderX):
        """DataLoaderX with CUDA (prefetch to the GPU); a plain ``DataLoader`` without it."""
        _canu_compat = True

        def __init__(self, local_rank, **kwargs):
            self._use_cuda = torch.cuda.is_available()
            if self._use_cuda:
                super().__init__(local_rank, **kwargs)
            else:
                kwargs["pin_memory"] = False
                torch.utils.data.DataLoader.__init__(self, **kwargs)
                self.local_rank = local_rank

        def __iter__(self):
            if self._use_cuda:
                return super().__iter__()
            return torch.utils.data.DataLoader.__iter__(self)

        def shutdown(self):
            if self._use_cuda and hasattr(self, "iter"):
                super().shutdown()

    build.DataLoaderX = CompatDataLoaderX
    return True


def _fix_evaluator_cython():
    """ReidEvaluator runs ``make`` in site-packages when the cython module is absent (and exits the
    process when that fails). Skip the build: ``evaluate_rank`` falls back to numpy code, and
    canu-plugin's own evaluator (``canu_plugin.evaluation``) needs no compiler at all."""
    with warnings.catch_warnings():  # its import warns about the missing cython module
        warnings.filterwarnings("ignore", message="Cython rank evaluation")
        rank = importlib.import_module("fastreid.evaluation.rank")
    from fastreid.evaluation.reid_evaluation import ReidEvaluator

    if rank.IS_CYTHON_AVAI or getattr(ReidEvaluator._compile_dependencies, "_canu_compat", False):
        return False

    def _compile_dependencies(self):
        logger.debug("fastreid's cython evaluator is not built; no run-time compilation")

    _compile_dependencies._canu_compat = True
    ReidEvaluator._compile_dependencies = _compile_dependencies
    return True


def _fix_launch():
    """fastreid's worker asserts CUDA and uses NCCL: on a CPU machine use gloo instead."""
    from canu_plugin import distributed
    return distributed.install()


def _fix_ddp_on_cpu():
    """DefaultTrainer wraps the model as ``DDP(model, device_ids=[local_rank])``, which torch
    rejects for a CPU module. Drop ``device_ids`` when the module lives on the CPU."""
    from fastreid.engine import defaults
    from torch.nn.parallel import DistributedDataParallel

    if getattr(defaults.DistributedDataParallel, "_canu_compat", False):
        return False

    def ddp(module, device_ids=None, **kwargs):
        first = next(module.parameters(), None)
        if first is not None and first.device.type == "cpu":
            device_ids = None
        return DistributedDataParallel(module, device_ids=device_ids, **kwargs)

    ddp._canu_compat = True
    defaults.DistributedDataParallel = ddp
    return True


def _fix_checkpointer():
    """Atomic saves and ``weights_only`` loads for fastreid's Checkpointer."""
    from fastreid.utils.checkpoint import Checkpointer

    if getattr(Checkpointer.save, "_canu_compat", False):
        return False
    from canu_plugin import checkpoint
    Checkpointer.save = checkpoint.atomic_save
    Checkpointer.tag_last_checkpoint = checkpoint.atomic_tag_last_checkpoint
    Checkpointer._load_file = checkpoint.safe_load_file
    Checkpointer._load_model = checkpoint.checked_load_model
    Checkpointer.load = checkpoint.checked_load
    return True


def _fix_read_image():
    """An unreadable image raises a bare PIL error in a loader worker; name the file and the fix."""
    from fastreid.data import common

    if getattr(common.read_image, "_canu_compat", False):
        return False
    original = common.read_image

    def read_image(file_name, format=None):
        try:
            return original(file_name, format)
        except (OSError, ValueError, SyntaxError) as e:
            raise unreadable_image(file_name, e) from e

    read_image._canu_compat = True
    common.read_image = read_image
    return True




def _fix_pretrained_weights():
    """ImageNet weights from fast-reid's cache without gdown, and clear errors naming the file to
    fetch (:mod:`canu_plugin.pretrained`)."""
    from canu_plugin import pretrained
    return pretrained.install()


def _fix_metric_printer():
    """``CommonMetricPrinter.write`` estimates the ETA from the iterations since its last line and
    divides by zero when it is called twice at one iteration before the timer has any history (the
    last step's line, then the epoch's): a run of fewer than 4 iterations, e.g. a smoke test,
    crashes. Skip the repeated line instead."""
    from fastreid.utils.events import CommonMetricPrinter, get_event_storage

    if getattr(CommonMetricPrinter.write, "_canu_compat", False):
        return False
    original = CommonMetricPrinter.write

    def write(self):
        if self._last_write is not None and self._last_write[0] == get_event_storage().iter:
            return None
        return original(self)

    write._canu_compat = True
    CommonMetricPrinter.write = write
    return True


def _fix_contiguous_zero_grad():
    """fastreid's default optimizer runs on a flat copy of the parameters (``ContiguousParams``)
    whose ``.grad`` is a shared buffer; ``SimpleTrainer`` calls ``optimizer.zero_grad()``, which
    since torch 2.0 sets that ``.grad`` to None, so ``optimizer.step()`` skips every parameter and
    the model silently never trains. Zero the buffer in place instead."""
    import fastreid.engine.defaults as defaults
    import fastreid.solver as solver
    import fastreid.solver.build as solver_build
    from fastreid.utils.params import ContiguousParams

    original = solver_build.build_optimizer
    if getattr(original, "_canu_compat", False):
        return False

    def build_optimizer(cfg, model, contiguous=True):
        optimizer, params = original(cfg, model, contiguous=contiguous)
        if isinstance(params, ContiguousParams):
            optimizer.zero_grad = functools.partial(type(optimizer).zero_grad, optimizer, set_to_none=False)
        return optimizer, params

    build_optimizer._canu_compat = True
    for module in (solver_build, solver, defaults):
        module.build_optimizer = build_optimizer
    return True


def _fix_inplace_preprocess():
    """``Baseline.preprocess_image`` normalises ``batched_inputs["images"]`` in place; fast-reid's
    flip test (``inference_on_dataset``, TEST.FLIP) then flips the already normalised tensor and the
    model normalises it a second time. Normalise into a new tensor (same values, no side effect)."""
    from fastreid.modeling.meta_arch.baseline import Baseline

    if getattr(Baseline.preprocess_image, "_canu_compat", False):
        return False

    def preprocess_image(self, batched_inputs):
        images = batched_inputs["images"] if isinstance(batched_inputs, dict) else batched_inputs
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"batched_inputs must be dict or torch.Tensor, but get {type(batched_inputs)}")
        return (images.to(self.pixel_mean.device) - self.pixel_mean) / self.pixel_std

    preprocess_image._canu_compat = True
    Baseline.preprocess_image = preprocess_image
    return True


def _quiet_typed_storage_warning():
    """fastreid/data/transforms/functional.py builds tensors through ``torch.ByteStorage``, which
    torch 2.x deprecates with a warning per image batch; behaviour is unchanged, so silence it."""
    warnings.filterwarnings("ignore", message="TypedStorage is deprecated", category=UserWarning)
    return False


_FIXES = (
    ("torch._six", _fix_torch_six),
    ("collections aliases", _fix_collections_aliases),
    ("DataLoaderX without CUDA", _fix_dataloaderx),
    ("evaluator without cython build", _fix_evaluator_cython),
    ("optimizer zero_grad with contiguous params", _fix_contiguous_zero_grad),
    ("launch with gloo on CPU", _fix_launch),
    ("DDP on CPU", _fix_ddp_on_cpu),
    ("atomic, weights_only checkpoints", _fix_checkpointer),
    ("readable errors for bad images", _fix_read_image),
    ("preprocess without side effects (flip test)", _fix_inplace_preprocess),
    ("ImageNet weights offline", _fix_pretrained_weights),
    ("progress line of very short runs", _fix_metric_printer),
    ("quiet TypedStorage deprecation", _quiet_typed_storage_warning),
)


def apply():
    """Apply every fix that this fastreid / torch / Python combination needs (idempotent).

    Returns:
        list[str]: names of the fixes applied by this call.
    """
    # the first two must run before anything imports fastreid.data
    done = []
    for name, fix in _FIXES:
        if fix():
            done.append(name)
    _APPLIED.extend(done)
    return done


def applied():
    """Names of the fixes this process needed (for logs and ``collect_env``)."""
    return list(_APPLIED)

