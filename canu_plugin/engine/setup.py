"""Config set-up for the command-line tools: fast-reid's defaults + canu keys + file + overrides,
with one clear message for each mistake a user can make in them."""
import os

import torch
from fastreid.config import get_cfg

from canu_plugin.config import add_canu_config
from canu_plugin.errors import CanuError
from canu_plugin.resources import config_path


def _merge(cfg, config_file, opts):
    if config_file:
        config_file = config_path(config_file)  # a user's path, else a shipped config's name
        try:
            cfg.merge_from_file(config_file)
        except KeyError as e:
            raise CanuError(f"{config_file}: {e.args[0]}. Check the spelling against "
                            "fastreid/config/defaults.py and canu_plugin/config.py.") from e
    flags = [o for o in opts if str(o).startswith("--")]
    if flags:
        raise CanuError(f"{flags[0]} comes after the KEY VALUE overrides, where it is read as a key: put the "
                        f"flags first, e.g. tools/train_net.py --config-file FILE {flags[0]} KEY VALUE ...")
    if len(opts) % 2:
        raise CanuError(f"command-line overrides must come in KEY VALUE pairs, got {opts!r}")
    try:
        cfg.merge_from_list(list(opts))
    except (KeyError, AssertionError, ValueError) as e:
        raise CanuError(f"bad command-line override: {e.args[0] if e.args else e}. Keys must exist in "
                        "fastreid/config/defaults.py or canu_plugin/config.py, with values of the "
                        "same type as the default.") from e


def _check_device(cfg):
    device = str(cfg.MODEL.DEVICE)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CanuError(f"MODEL.DEVICE is {device!r} but torch sees no CUDA device: add "
                        "`MODEL.DEVICE cpu` to the command line, or run on a machine with a GPU.")


def _check_periods(cfg):
    if cfg.SOLVER.CHECKPOINT_PERIOD < 1:
        raise CanuError(f"SOLVER.CHECKPOINT_PERIOD {cfg.SOLVER.CHECKPOINT_PERIOD}: it counts epochs between "
                        "checkpoints and must be >= 1 (1 makes every epoch resumable)")
    if cfg.TEST.EVAL_PERIOD < 0:
        raise CanuError(f"TEST.EVAL_PERIOD {cfg.TEST.EVAL_PERIOD}: use N >= 1 (every N epochs and after the "
                        "last) or 0 (after the last epoch only)")


def check_batch(cfg, world_size):
    """Batch sizes fast-reid's samplers can fill (an identity sampler asked for fewer images than
    one identity's K spins forever).

    Raises:
        CanuError: ``SOLVER.IMS_PER_BATCH`` not divisible by the processes, or, with P x K batches
            (pseudo-labels, identity samplers), its per-process share not a multiple of K >= 1.
    """
    total, k = cfg.SOLVER.IMS_PER_BATCH, cfg.DATALOADER.NUM_INSTANCE
    if total < world_size or total % world_size:
        raise CanuError(f"SOLVER.IMS_PER_BATCH {total} cannot be split over {world_size} processes: use a "
                        f"multiple of {world_size}")
    identity = cfg.PSEUDO.ENABLED or cfg.MODEL.ACAN.ENABLED or "Identity" in cfg.DATALOADER.SAMPLER_TRAIN
    per_rank = total // world_size
    if identity and (k < 1 or per_rank < k or per_rank % k):
        raise CanuError(f"P x K batches of {per_rank} image(s) per process cannot hold identities of "
                        f"DATALOADER.NUM_INSTANCE {k} images: make SOLVER.IMS_PER_BATCH a multiple of "
                        f"{max(k, 1) * world_size} (K x processes), or lower DATALOADER.NUM_INSTANCE")


def check_source_training(cfg, model):
    """``PSEUDO.TRAIN_SOURCE`` needs a source set and a model whose classifier takes its identities.

    Args:
        cfg: the run's config; model: the unwrapped :class:`~canu_plugin.modeling.contract.PseudoLabelModel`.
    Raises:
        CanuError: no ``PSEUDO.SOURCE_DATASETS``, a model without ``supports_source_training`` (MMT,
            SSG), an adversarial method (CANU, +Adv, ACAN) or tracklets.
    """
    if not (cfg.PSEUDO.ENABLED and cfg.PSEUDO.TRAIN_SOURCE):
        return
    fix = "set PSEUDO.TRAIN_SOURCE False"
    if not cfg.PSEUDO.SOURCE_DATASETS:
        raise CanuError("PSEUDO.TRAIN_SOURCE trains on the labelled source beside the clusters but "
                        "PSEUDO.SOURCE_DATASETS is empty: name it, e.g. `PSEUDO.SOURCE_DATASETS '(\"Market1501\",)'`, "
                        f"or {fix}")
    if not model.supports_source_training:
        raise CanuError(f"PSEUDO.TRAIN_SOURCE: MODEL.META_ARCHITECTURE {cfg.MODEL.META_ARCHITECTURE} cannot train "
                        f"on the source beside its clusters (only PseudoBaseline can): {fix}, or use PseudoBaseline")
    if cfg.MODEL.CANU.ENABLED or cfg.MODEL.ACAN.ENABLED:
        raise CanuError("PSEUDO.TRAIN_SOURCE is not combined with a camera discriminator yet (the source "
                        f"cameras would enter its classes): {fix}, or MODEL.CANU.ENABLED False")
    from canu_plugin.data.video import uses_video
    if uses_video(cfg.DATASETS.NAMES) or uses_video(cfg.PSEUDO.SOURCE_DATASETS):
        raise CanuError(f"PSEUDO.TRAIN_SOURCE trains on images only, and DATASETS.NAMES or PSEUDO.SOURCE_DATASETS "
                        f"are tracklets: {fix}")


def _check_pretrain(cfg):
    bb = cfg.MODEL.BACKBONE
    if bb.PRETRAIN and bb.PRETRAIN_PATH and not os.path.isfile(bb.PRETRAIN_PATH):
        from canu_plugin.pretrained import missing_path_message
        raise CanuError(missing_path_message(cfg))


def setup_cfg(config_file="", opts=(), freeze=True):
    """Build the run's config: ``get_cfg()`` + :func:`add_canu_config` + file + ``KEY VALUE`` overrides.

    Raises:
        CanuError: missing file, unknown key, bad value, unusable device or missing weights file.
    """
    cfg = add_canu_config(get_cfg())
    _merge(cfg, config_file, opts)
    _check_device(cfg)
    _check_periods(cfg)
    _check_pretrain(cfg)
    if freeze:
        cfg.freeze()
    return cfg


def merged_cfg(config_file="", opts=()):
    """The config of :func:`setup_cfg` (defaults + canu keys + file + overrides, the same messages for bad keys
    and values) without its checks of the device and weights, unfrozen: to read a value of a run that may be
    meant for another machine (the benchmark's identity of a finished GPU run)."""
    cfg = add_canu_config(get_cfg())
    _merge(cfg, config_file, opts)
    return cfg


def _dataset_keys(cfg):
    """[(key, names, what the config does with them)] of every config key that names datasets."""
    keys = [("DATASETS.NAMES", cfg.DATASETS.NAMES, "the unlabelled target set this config adapts to"
             if cfg.PSEUDO.ENABLED else "the training set of this config")]
    if cfg.PSEUDO.ENABLED and cfg.CLUSTERING.SOURCE_LAMBDA > 0:
        keys.append(("PSEUDO.SOURCE_DATASETS", cfg.PSEUDO.SOURCE_DATASETS, "the labelled source set whose "
                     "features enter the clustering (CLUSTERING.SOURCE_LAMBDA > 0)"))
    elif cfg.PSEUDO.ENABLED and cfg.PSEUDO.TRAIN_SOURCE:
        keys.append(("PSEUDO.SOURCE_DATASETS", cfg.PSEUDO.SOURCE_DATASETS, "the labelled source set trained "
                     "beside the clusters (PSEUDO.TRAIN_SOURCE)"))
    keys.append(("DATASETS.TESTS", cfg.DATASETS.TESTS, "the datasets this config evaluates on"))
    return keys


def _drop_fix(key, names, missing):
    """How to run without the ``missing`` datasets of ``key`` (a command-line override), or what to do
    when dropping them leaves the key empty."""
    rest = [n for n in names if n not in missing]
    if not rest:
        if key == "PSEUDO.SOURCE_DATASETS":
            return ("or run without the source: add `CLUSTERING.SOURCE_LAMBDA 0` (SSG's distance term) or "
                    "`PSEUDO.TRAIN_SOURCE False` (source trained beside the clusters), the one your config sets, "
                    "to the command line")
        return "or choose a config for a dataset you have (or override the key with one you have)"
    value = "(" + ", ".join(f'"{n}"' for n in rest) + ",)"
    return f"or run without {' and '.join(missing)}: add `{key} '{value}'` to the command line (after the flags)"


def check_config_datasets(cfg, root, eval_only=False):
    """Check that every dataset the config names (``eval_only``: the test sets) is laid out under ``root``.

    The error names the config key that asked for the missing dataset(s) (``DATASETS.NAMES``,
    ``PSEUDO.SOURCE_DATASETS``, ``DATASETS.TESTS``) and the override that drops them: a test list
    extended on the command line (direct transfer) may name a dataset the user does not have.

    Raises:
        CanuError: each missing dataset's layout error, the key, and the fix.
    """
    from canu_plugin.data.datasets import check_dataset_layout
    for key, names, role in _dataset_keys(cfg):
        if eval_only and key != "DATASETS.TESTS":
            continue
        errors = {}
        for name in names:
            try:
                check_dataset_layout(name, root)
            except CanuError as e:
                errors[name] = str(e)
        if errors:
            missing = list(errors)
            problems = " ".join(f"[{n}] {msg.rstrip('.')}." for n, msg in errors.items())
            them = "it" if len(missing) == 1 else "them"
            raise CanuError(f"{' and '.join(missing)} of {key} {tuple(names)} ({role}): not in place under the dataset "
                            f"root {root}. {problems} Put {them} in place, {_drop_fix(key, names, missing)}.")


def seed_from_config(cfg):
    """Seed python, numpy and torch with ``cfg.SEED`` + rank (after fast-reid's ``default_setup``,
    which seeds randomly); nothing when ``SEED`` < 0."""
    from fastreid.utils import comm
    from fastreid.utils.env import seed_all_rng
    if cfg.SEED >= 0:
        seed_all_rng(cfg.SEED + comm.get_rank())
