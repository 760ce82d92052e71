"""Checkpoint I/O for fastreid's ``Checkpointer``: atomic writes, ``weights_only`` reads, and clear
errors for a checkpoint of another architecture or one that is not on disk.

Installed into ``fastreid.utils.checkpoint.Checkpointer`` by :mod:`canu_plugin.compat`.
"""
import logging
import os
import pickle
import tempfile

import numpy as np
import torch
from fastreid.utils.checkpoint import Checkpointer

from canu_plugin.errors import CanuError

logger = logging.getLogger(__name__)

# numpy objects found in fast-reid model-zoo files; safe to rebuild under weights_only=True
try:
    from numpy._core.multiarray import _reconstruct, scalar
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct, scalar
_NUMPY_SAFE = [np.ndarray, np.dtype, _reconstruct, scalar] + [
    type(np.dtype(t)) for t in ("f2", "f4", "f8", "i8", "i4", "i2", "u1", "b1")]


def atomic_write(path, write_fn, mode="wb"):
    """Write a file atomically: ``write_fn(fileobj)`` fills a temporary file in the same folder,
    which is fsync'ed and renamed over ``path``. A kill at any moment leaves either the old file or
    the new one, never a torn one."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, mode) as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def link_or_copy(src, dst):
    """``dst`` becomes a hard link to the file ``src`` (a copy where links fail: another file system),
    atomically; usable as ``shutil.copytree``'s ``copy_function``. Returns ``dst``."""
    tmp = dst + ".link.tmp"
    try:
        if os.path.lexists(tmp):
            os.remove(tmp)
        os.link(src, tmp)
        os.replace(tmp, dst)
    except OSError:
        with open(src, "rb") as f:
            data = f.read()
        atomic_write(dst, lambda out: out.write(data))
    return dst


def remove_stale_temporaries(folder):
    """Delete what a kill during :func:`atomic_write` left in ``folder`` (``.<name>.<random>.tmp``).

    Returns:
        the names removed.
    """
    if not os.path.isdir(folder):
        return []
    stale = [n for n in os.listdir(folder) if n.startswith(".") and n.endswith(".tmp")]
    for name in stale:
        os.remove(os.path.join(folder, name))
    if stale:
        logger.info(f"removed {len(stale)} partial file(s) of an interrupted write in {folder}: {stale}")
    return stale


def atomic_save(self, name, **kwargs):
    """``Checkpointer.save`` that writes ``<save_dir>/<name>.pth`` atomically, then tags it."""
    if not self.save_dir or not self.save_to_disk:
        return
    data = {"model": self.model.state_dict()}
    for key, obj in self.checkpointables.items():
        data[key] = obj.state_dict()
    data.update(kwargs)
    basename = "{}.pth".format(name)
    save_file = os.path.join(self.save_dir, basename)
    self.logger.info("Saving checkpoint to {}".format(save_file))
    atomic_write(save_file, lambda f: torch.save(data, f))
    self.tag_last_checkpoint(basename)


def atomic_tag_last_checkpoint(self, last_filename_basename):
    """``Checkpointer.tag_last_checkpoint`` with an atomic write of ``last_checkpoint``."""
    save_file = os.path.join(self.save_dir, "last_checkpoint")
    atomic_write(save_file, lambda f: f.write(last_filename_basename), mode="w")


def _is_torch_file(path):
    """Does ``path`` start like a file ``torch.save`` wrote (a zip archive, or a legacy pickle)?"""
    with open(path, "rb") as f:
        head = f.read(4)
    return head == b"PK\x03\x04" or (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5)  # zip / pickle 2-5


def safe_load_file(self, f):
    """Load a checkpoint with ``torch.load(weights_only=True)`` (numpy arrays allowed).

    Raises:
        CanuError: no such file, not a torch file (text, JSON, random bytes), a torn file, or one
            holding arbitrary Python objects.
    """
    if not os.path.isfile(f):
        raise CanuError(f"checkpoint {f!r} does not exist: check the path (MODEL.WEIGHTS, or the file named "
                        "in OUTPUT_DIR/last_checkpoint)")
    if not _is_torch_file(f):
        raise CanuError(f"{f!r} is not a checkpoint written by torch.save (a text, JSON or other file): point "
                        "MODEL.WEIGHTS at a .pth file saved by fast-reid / this plugin")
    try:
        with torch.serialization.safe_globals(_NUMPY_SAFE):
            return torch.load(f, map_location=torch.device("cpu"), weights_only=True)
    except pickle.UnpicklingError as e:
        if "global" not in str(e).lower():  # a broken pickle stream, not a forbidden object
            raise CanuError(f"checkpoint {f!r} is corrupt ({str(e).splitlines()[0][:120]}): use an earlier "
                            "checkpoint from the same folder, or train again") from e
        raise CanuError(
            f"checkpoint {f!r} holds Python objects that torch.load(weights_only=True) refuses "
            f"({str(e).splitlines()[0]}). If you trust the file, convert it once: "
            "sd = torch.load(path, weights_only=False); torch.save({'model': sd['model']}, new_path)"
        ) from e
    except (RuntimeError, EOFError, KeyError, ValueError) as e:
        raise CanuError(f"checkpoint {f!r} is not a readable torch file ({type(e).__name__}: {e}). It may be "
                        "truncated: use an earlier checkpoint from the same folder.") from e


def strip_module_prefix(state):
    """A state dict without DistributedDataParallel's ``module.`` key prefix."""
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def backbone_mismatches(model_state, state):
    """Keys of the model's backbone tensors (``backbone.*`` or ``*.backbone.*``) that ``state``
    lacks or holds with another shape: a checkpoint of another architecture.

    Args:
        model_state: the model's state dict; state: the checkpoint's (``module.`` stripped).
    Returns:
        list of keys, empty when the backbone matches.
    """
    return [k for k, v in model_state.items() if (k.startswith("backbone.") or ".backbone." in k)
            and (k not in state or tuple(state[k].shape) != tuple(v.shape))]


def state_dict_of(checkpoint):
    """The model tensors of a loaded checkpoint: its ``model`` entry (or the dict itself, for a
    plain state dict), without a ``module.`` prefix, numpy arrays (old fast-reid model-zoo files)
    turned into tensors, as fast-reid's Checkpointer does."""
    state = strip_module_prefix(checkpoint.get("model", checkpoint))
    return {k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in state.items()}


def checked_load_model(self, checkpoint):
    """``Checkpointer._load_model`` that refuses a checkpoint whose *backbone* does not match.

    Heads may differ (a source model's classifier has another number of classes: it is skipped
    with a warning, as fast-reid does); a backbone with missing or mis-shaped weights means the
    checkpoint is of another architecture, which fast-reid would load silently half-initialised.
    """
    if "model" not in checkpoint:
        raise CanuError("checkpoint has no 'model' entry: it was not written by fast-reid's "
                        "Checkpointer. Save it as {'model': state_dict}.")
    state = strip_module_prefix(checkpoint["model"])
    model_state = self.model.state_dict()
    backbone = [k for k in model_state if k.startswith("backbone.")]
    bad = [k for k in backbone_mismatches(model_state, state) if k.startswith("backbone.")]
    if bad:
        examples = ", ".join(bad[:3])
        raise CanuError(
            f"checkpoint does not match this model's backbone: {len(bad)} of {len(backbone)} backbone "
            f"tensors are missing or have another shape (e.g. {examples}). It was trained with another "
            "MODEL.BACKBONE (NAME/DEPTH/WITH_IBN) or input: use the same backbone settings as the run "
            "that wrote it, or point MODEL.WEIGHTS at a matching checkpoint.")
    return _ORIGINAL_LOAD_MODEL(self, checkpoint)


def checked_load(self, path, checkpointables=None):
    """``Checkpointer.load`` with a clear error for a checkpoint that is not on disk (fast-reid
    asserts, or tries to download a URL, which fails offline)."""
    zoo = ("a fast-reid model-zoo model (e.g. market_bot_R50.pth, listed in fast-reid's MODEL_ZOO.md) is a "
           "file to download first")
    if path and not os.path.isfile(path):
        if "://" not in path:
            raise CanuError(f"checkpoint {path!r} (MODEL.WEIGHTS) does not exist: train the run that writes it, or "
                            f"fix the path; {zoo}, then set MODEL.WEIGHTS to the local file.")
        try:
            return _ORIGINAL_LOAD(self, path, checkpointables)
        except CanuError:
            raise
        except Exception as e:  # noqa: BLE001 - any download failure
            raise CanuError(f"could not download the checkpoint {path} ({type(e).__name__}: {e}). Download it on a "
                            f"machine with internet and set MODEL.WEIGHTS to the local file ({zoo}).") from e
    return _ORIGINAL_LOAD(self, path, checkpointables)


_ORIGINAL_LOAD_MODEL = Checkpointer._load_model
_ORIGINAL_LOAD = Checkpointer.load
for _fn in (atomic_save, atomic_tag_last_checkpoint, safe_load_file, checked_load_model, checked_load):
    _fn._canu_compat = True
