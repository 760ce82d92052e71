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
    _check_pretrain(cfg)
    if freeze:
        cfg.freeze()
    return cfg


def seed_from_config(cfg):
    """Seed python, numpy and torch with ``cfg.SEED`` + rank (after fast-reid's ``default_setup``,
    which seeds randomly); nothing when ``SEED`` < 0."""
    from fastreid.utils import comm
    from fastreid.utils.env import seed_all_rng
    if cfg.SEED >= 0:
        seed_all_rng(cfg.SEED + comm.get_rank())
