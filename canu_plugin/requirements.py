"""Import-time check of what pip cannot install for us: fast-reid (installed with ``--no-deps``
because of its ``torch==1.13.1`` pin) and a torch recent enough for the plugin."""
import importlib
import importlib.util
import sys

MIN_TORCH = (2, 5)  # torch.serialization.safe_globals (2.5); torch.func (2.0)
FASTREID_INSTALL = f"{sys.executable} -m pip install --no-deps fastreid==1.4.0"
FASTREID_DEPS = ("opencv-python-headless, tabulate, termcolor, tensorboard, yacs, scikit-learn (installed with "
                 "canu-plugin) and faiss (its extra: canu-plugin[cpu] = faiss-cpu, canu-plugin[gpu] = faiss-gpu-cu12)")


class MissingRequirement(ImportError):
    """A dependency of canu-plugin is missing or too old; the message has the install command."""


def _version_tuple(version):
    parts = []
    for piece in version.split("+")[0].split(".")[:2]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def check_requirements():
    """Raise :class:`MissingRequirement` (an ImportError) when fast-reid or faiss is not importable
    or torch is older than :data:`MIN_TORCH`, with the exact command that fixes it."""
    torch = importlib.import_module("torch")
    if _version_tuple(torch.__version__) < MIN_TORCH:
        raise MissingRequirement(
            f"canu-plugin needs torch>={'.'.join(map(str, MIN_TORCH))}, this Python ({sys.executable}) has "
            f"torch {torch.__version__}: {sys.executable} -m pip install 'torch>=2.5' 'torchvision>=0.20' "
            "(pick the build for your CUDA at pytorch.org)")
    try:
        importlib.import_module("fastreid")
    except ModuleNotFoundError as e:
        if e.name != "fastreid":
            raise
        raise MissingRequirement(
            f"canu-plugin needs fast-reid 1.4.0, which is not installed in this Python ({sys.executable}). "
            f"Install it without its torch==1.13.1 pin (it runs on torch 2.x through canu_plugin.compat): "
            f"`{FASTREID_INSTALL}`. Its run-time dependencies are {FASTREID_DEPS}.") from None
    if importlib.util.find_spec("faiss") is None:  # fastreid.evaluation imports it
        raise MissingRequirement(
            f"canu-plugin needs faiss, which is not installed in this Python ({sys.executable}): "
            f"`{sys.executable} -m pip install faiss-cpu` (or faiss-gpu-cu12 with a CUDA build of torch); "
            "the extras canu-plugin[cpu] / canu-plugin[gpu] install them.")
