"""canu-plugin: camera-invariant unsupervised person re-ID (CANU-ReID, ACAN) for fast-reid.

``import canu_plugin`` first checks that fast-reid and a torch 2.x that it supports are there (the
message says how to install them), makes fastreid 1.4.0 work on this Python / torch / device
(:mod:`canu_plugin.compat`), then imports the modules that register the plugin's datasets,
meta-architectures, heads, discriminators and hooks into fast-reid's registries.
"""
from canu_plugin.requirements import check_requirements as _check_requirements

_check_requirements()

from canu_plugin import compat as _compat  # noqa: E402

_compat.apply()

from canu_plugin.config import add_canu_config  # noqa: E402
from canu_plugin.errors import CanuError  # noqa: E402
from canu_plugin.resources import config_path  # noqa: E402
from canu_plugin import data, modeling  # noqa: E402,F401  (register into fast-reid)

__version__ = "0.1.0"
__all__ = ["add_canu_config", "config_path", "CanuError", "__version__"]
