"""ImageNet weights for fast-reid's backbones, offline and with clear errors.

fast-reid's ``MODEL.BACKBONE.PRETRAIN True`` either reads ``MODEL.BACKBONE.PRETRAIN_PATH`` or
downloads the file named in the backbone's ``model_urls`` with ``gdown`` (which neither fastreid
1.4.0 nor canu-plugin installs) into ``$TORCH_HOME/checkpoints``. Installed by
:mod:`canu_plugin.compat`:

- the download functions (``init_pretrained_weights`` of ResNet, ResNeXt, RegNet, EfficientNet)
  read the cached file without needing gdown, and otherwise fail with the exact file, its URL and
  where to put it;
- ``build_resnet_backbone`` with ``PRETRAIN_PATH`` also accepts a fast-reid checkpoint
  (``{"model": {"backbone.*": ...}}``: its backbone part is used) and refuses a file of which no
  tensor fits the backbone, which fast-reid would load silently as nothing (a random network), a
  file with tensors of this backbone's names but other shapes (another depth: fast-reid would stop
  with a bare "size mismatch"), and a file whose provenance (``<file>.provenance.json``, written
  beside the synthetic pre-training's weights, :mod:`canu_plugin.bench.pretrain`) names another
  architecture (e.g. ResNet-18 weights for a ResNet-34, whose shared tensors all fit).
"""
import importlib
import importlib.util
import json
import logging
import os

from canu_plugin.errors import CanuError

logger = logging.getLogger(__name__)

DOWNLOADING_BACKBONES = ("resnet", "resnext", "regnet.regnet", "regnet.effnet")


def torch_checkpoint_dir():
    """fast-reid's download folder: ``$TORCH_HOME/checkpoints`` (default ``~/.cache/torch/checkpoints``)."""
    home = os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch"))
    return os.path.join(os.path.expanduser(home), "checkpoints")


def weights_help(url, why):
    """The message for ImageNet weights that cannot be had: which file, where to put it, the options."""
    filename = url.rsplit("/", 1)[-1]
    cached = os.path.join(torch_checkpoint_dir(), filename)
    return (f"MODEL.BACKBONE.PRETRAIN True needs the ImageNet weights {filename} ({why}). Download {url} "
            f"(on a machine with internet) and put it at {cached}, or anywhere and set "
            f"MODEL.BACKBONE.PRETRAIN_PATH to it; `pip install gdown` lets fast-reid download it itself; "
            "MODEL.BACKBONE.PRETRAIN False trains from scratch.")


def imagenet_url(cfg):
    """URL of the ImageNet file fast-reid would download for ``cfg``'s ResNet backbone, or None
    (another backbone, or a depth fast-reid has no file for)."""
    bb = cfg.MODEL.BACKBONE
    if bb.NAME != "build_resnet_backbone":
        return None
    from fastreid.modeling.backbones import resnet
    key = ("se_" if bb.WITH_SE else "") + ("ibn_" if bb.WITH_IBN else "") + bb.DEPTH
    return resnet.model_urls.get(key)


def missing_path_message(cfg):
    """The error for a ``MODEL.BACKBONE.PRETRAIN_PATH`` that does not exist: which file to put there."""
    path, url = cfg.MODEL.BACKBONE.PRETRAIN_PATH, imagenet_url(cfg)
    what = f"the ImageNet weights of this backbone, {url}," if url else "the backbone's ImageNet weights"
    return (f"MODEL.BACKBONE.PRETRAIN_PATH {path!r} does not exist: download {what} and put them there (or "
            "leave PRETRAIN_PATH empty to use fast-reid's cache), or set MODEL.BACKBONE.PRETRAIN False to "
            "train from scratch.")


def _load_state(path, url=None):
    """A weights file as a state dict (``weights_only``), with a CanuError for a torn/foreign file."""
    from canu_plugin.checkpoint import safe_load_file
    try:
        state = safe_load_file(None, path)
    except CanuError as e:
        why = f"{path} is not a readable weights file: {e}"
        raise CanuError(weights_help(url, why) if url else f"MODEL.BACKBONE.PRETRAIN_PATH: {why}") from e
    return state


def offline_download(module):
    """Wrap ``module.init_pretrained_weights(key)``: a cached file needs no gdown; a missing one,
    without gdown or when the download fails, raises a CanuError naming the file and its place."""
    original = module.init_pretrained_weights

    def init_pretrained_weights(key):
        url = module.model_urls[key]
        cached = os.path.join(torch_checkpoint_dir(), url.rsplit("/", 1)[-1])
        if os.path.isfile(cached):
            logger.info(f"Loading pretrained model from {cached}")
            return _load_state(cached, url)
        if importlib.util.find_spec("gdown") is None:
            raise CanuError(weights_help(url, "it is not in fast-reid's cache and gdown is not installed"))
        try:
            return original(key)
        except Exception as e:  # noqa: BLE001 - network, gdown and torn-file errors alike
            if os.path.isfile(cached) and os.path.getsize(cached) == 0:
                os.remove(cached)
            raise CanuError(weights_help(url, f"the download failed: {type(e).__name__}: {e}")) from e

    init_pretrained_weights._canu_compat = True
    module.init_pretrained_weights = init_pretrained_weights


def backbone_state(path):
    """The backbone tensors of a weights file: a plain (ImageNet) state dict, or a fast-reid
    checkpoint ``{"model": {"backbone.<name>": ...}}`` whose ``backbone.`` part is returned."""
    from canu_plugin.checkpoint import state_dict_of
    state = _load_state(path)
    if not isinstance(state, dict) or not isinstance(state.get("model", state), dict):
        raise CanuError(f"MODEL.BACKBONE.PRETRAIN_PATH: {path} holds no state dict")
    state = state_dict_of(state)
    if any(k.startswith("backbone.") for k in state):
        state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    return state


ARCH_KEYS = ("NAME", "DEPTH", "WITH_IBN", "WITH_SE", "WITH_NL")  # what decides the backbone's tensors


def provenance_path(path):
    """``<weights file without .pth>.provenance.json``: where a pre-trained backbone's provenance lies."""
    return (path[:-4] if path.endswith(".pth") else path) + ".provenance.json"


def architecture(cfg):
    """{key: value} of ``cfg.MODEL.BACKBONE`` for :data:`ARCH_KEYS` (JSON-able)."""
    return {k: cfg.MODEL.BACKBONE[k] for k in ARCH_KEYS}


def check_provenance(path, cfg):
    """Raise CanuError when ``path`` has a provenance file naming another architecture than ``cfg``'s."""
    side = provenance_path(path)
    if not os.path.isfile(side):
        return
    with open(side) as f:
        made = json.load(f).get("arch")
    own = architecture(cfg)
    diff = {k: (made[k], own[k]) for k in ARCH_KEYS if made and k in made and made[k] != own[k]}
    if diff:
        what = ", ".join(f"{k} {a} (this config: {b})" for k, (a, b) in diff.items())
        raise CanuError(f"MODEL.BACKBONE.PRETRAIN_PATH {path} was pre-trained for another backbone: {what} "
                        f"({side}). Pre-train weights for this backbone (canu-bench --testbed ... --pretrain-only "
                        "with the same MODEL.BACKBONE settings) or set the config's backbone to the file's.")


def _fitting(path, state, own, bb):
    """The tensors of ``state`` that fit the backbone ``own`` (a state dict); CanuError when none does
    or when one of its names has another shape (a file of another depth or variant)."""
    wrong = sorted(k for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape))
    if wrong:
        k = wrong[0]
        raise CanuError(f"MODEL.BACKBONE.PRETRAIN_PATH {path}: {len(wrong)} tensors have this backbone's names "
                        f"but other shapes (e.g. {k}: {tuple(state[k].shape)} in the file, {tuple(own[k].shape)} "
                        f"here), so it holds another architecture than DEPTH {bb.DEPTH}, WITH_IBN {bb.WITH_IBN}: "
                        "use the weights of this backbone or set MODEL.BACKBONE to the file's.")
    fits = {k: v for k, v in state.items() if k in own}
    if not fits:
        raise CanuError(f"MODEL.BACKBONE.PRETRAIN_PATH {path}: none of its {len(state)} tensors fits this "
                        f"backbone (DEPTH {bb.DEPTH}, WITH_IBN {bb.WITH_IBN}); it is the weights of another "
                        "network. Use the ImageNet file of this backbone (e.g. torchvision's "
                        "resnet50-19c8e357.pth for 50x, resnet50_ibn_a-d9d0bb7b.pth with WITH_IBN True).")
    return fits


def checked_resnet_builder(original):
    """``build_resnet_backbone`` that loads ``PRETRAIN_PATH`` itself (:func:`backbone_state`) and
    refuses a file of which no tensor matches the backbone."""

    def build_resnet_backbone(cfg):
        bb = cfg.MODEL.BACKBONE
        if not (bb.PRETRAIN and bb.PRETRAIN_PATH):
            return original(cfg)
        path = bb.PRETRAIN_PATH
        if not os.path.isfile(path):
            raise CanuError(missing_path_message(cfg))
        check_provenance(path, cfg)
        plain = cfg.clone()
        plain.defrost()
        plain.MODEL.BACKBONE.PRETRAIN = False
        model = original(plain)
        own = model.state_dict()
        fits = _fitting(path, backbone_state(path), own, bb)
        missing = sorted(set(own) - set(fits))
        if missing:
            logger.info(f"{path}: {len(missing)} backbone tensors not in the file, left random: {missing[:8]}")
        model.load_state_dict(fits, strict=False)
        logger.info(f"Loading pretrained model from {path} ({len(fits)} of {len(own)} tensors)")
        return model

    build_resnet_backbone._canu_compat = True
    return build_resnet_backbone


def install():
    """Install both wrappers into fast-reid (idempotent). Returns True when something was installed."""
    from fastreid.modeling.backbones import BACKBONE_REGISTRY
    done = False
    for name in DOWNLOADING_BACKBONES:
        module = importlib.import_module(f"fastreid.modeling.backbones.{name}")
        if not getattr(module.init_pretrained_weights, "_canu_compat", False):
            offline_download(module)
            done = True
    builder = BACKBONE_REGISTRY.get("build_resnet_backbone")
    if not getattr(builder, "_canu_compat", False):
        BACKBONE_REGISTRY._obj_map["build_resnet_backbone"] = checked_resnet_builder(builder)
        done = True
    return done
