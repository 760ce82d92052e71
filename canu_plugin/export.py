"""A trained canu-plugin model as a plain fast-reid ``Baseline`` (backbone + head), for deployment with
fast-reid's own tools (ONNX / TensorRT).

What is kept of each meta-architecture (the eval output of the exported Baseline is fast-reid's:
the head's embedding, un-normalised; fast-reid's tests L2-normalise it):

| trained             | exported Baseline                            | same test feature as the plugin?       |
|---------------------|----------------------------------------------|----------------------------------------|
| Baseline, PseudoBaseline (+Adv/CANU) | backbone + head, classifier of pseudo-labels dropped | yes                    |
| ACAN (any scheme)   | backbone + head (classifier of intra-camera labels dropped) | yes                     |
| MMT / CANU-MMT      | one network: ``teacher1`` (default), ``teacher2``, ``net1`` or ``net2`` | no: the plugin tests the mean of both teachers' normalised embeddings; one mean teacher is what MMT's paper and code test |
| SSG / CANU-SSG      | refused, unless ``ssg_full_body``: backbone + full-body head | no: SSG tests the concatenation of the full, upper and lower embeddings (3D), which one fast-reid head cannot compute; the full-body part is its first third |

Discriminators (CANU, ACAN), gradient reversal and the optimisers live outside the model's weights
and are never exported. The classifier is exported with 0 rows (``MODEL.HEADS.NUM_CLASSES 0``): a
deployment model has no identities; the eval forward does not use it.
"""
import copy
import inspect
import os

import torch

from canu_plugin.checkpoint import atomic_write, safe_load_file, strip_module_prefix
from canu_plugin.errors import CanuError

SINGLE_NETWORK = ("Baseline", "PseudoBaseline", "ACAN")
MMT_NETS = ("teacher1", "teacher2", "net1", "net2")
PLAIN_HEADS = {"PseudoEmbeddingHead": "EmbeddingHead"}  # plugin head -> fast-reid head with the same tensors


def _strip(state, prefix):
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def baseline_state(arch, state, mmt_net="teacher1", ssg_full_body=False):
    """The tensors of the fast-reid Baseline inside a trained model.

    Args:
        arch: ``MODEL.META_ARCHITECTURE`` of the run; state: its ``model`` state dict.
        mmt_net: MMT's network to export (one of :data:`MMT_NETS`).
        ssg_full_body: export SSG's full-body branch (see the module docstring).
    Returns:
        dict: ``backbone.*`` and ``heads.*`` tensors; ``heads.weight`` with 0 rows.
    Raises:
        CanuError: unknown architecture, SSG without ``ssg_full_body``, bad ``mmt_net``.
    """
    state = strip_module_prefix(state)
    if arch == "MMT":
        if mmt_net not in MMT_NETS:
            raise CanuError(f"MMT network {mmt_net!r}: choose one of {', '.join(MMT_NETS)} (--mmt-net)")
        state = _strip(state, mmt_net + ".")
    elif arch == "SSG":
        if not ssg_full_body:
            raise CanuError(
                "an SSG model's test feature is the concatenation of its full-body, upper and lower embeddings, "
                "which a fast-reid Baseline (one head over the whole feature map) cannot compute. Pass "
                "--ssg-full-body to export the full-body branch (backbone + full-body head: the first third of "
                "SSG's feature, usually a little less accurate than the concatenation).")
    elif arch not in SINGLE_NETWORK:
        raise CanuError(f"cannot export MODEL.META_ARCHITECTURE {arch!r}: supported are "
                        f"{', '.join(SINGLE_NETWORK + ('MMT', 'SSG'))}")
    kept = {k: v for k, v in state.items() if k.startswith(("backbone.", "heads."))}
    if not any(k.startswith("backbone.") for k in kept):
        raise CanuError(f"the checkpoint has no backbone tensors for a {arch} model (keys like "
                        f"{', '.join(list(state)[:3])}): it was trained with another MODEL.META_ARCHITECTURE; "
                        "export it with the config of the run that wrote it.")
    if "heads.weight" in kept:
        kept["heads.weight"] = kept["heads.weight"].new_zeros((0, kept["heads.weight"].size(1)))
    return kept


def _fastreid_keys_only(node, reference):
    """Copy of config ``node`` restricted to the keys of ``reference`` (fast-reid's defaults)."""
    out = type(node)()
    for key, value in node.items():
        if key not in reference:
            continue
        ref = reference[key]
        out[key] = _fastreid_keys_only(value, ref) if isinstance(value, dict) and isinstance(ref, dict) \
            else copy.deepcopy(value)
    return out


def baseline_config(cfg, weights_path):
    """A config that plain fast-reid (``fastreid.config.get_cfg()``, no plugin keys) accepts, for the
    exported Baseline: the run's fast-reid settings, META_ARCHITECTURE Baseline, the plugin's head
    replaced by fast-reid's, no classifier, no ImageNet download, ``MODEL.WEIGHTS`` = the export."""
    from fastreid.config import get_cfg
    out = _fastreid_keys_only(cfg, get_cfg())
    out.MODEL.META_ARCHITECTURE = "Baseline"
    out.MODEL.HEADS.NAME = PLAIN_HEADS.get(out.MODEL.HEADS.NAME, out.MODEL.HEADS.NAME)
    out.MODEL.HEADS.NUM_CLASSES = 0
    out.MODEL.BACKBONE.PRETRAIN = False
    out.MODEL.BACKBONE.PRETRAIN_PATH = ""
    out.MODEL.WEIGHTS = os.path.abspath(weights_path)
    return out


def export_baseline(cfg, weights, output_dir, mmt_net="teacher1", ssg_full_body=False):
    """Write ``output_dir/model.pth`` (``{"model": state}``) and ``output_dir/config.yaml``.

    Args:
        cfg: the run's config (plugin keys included), e.g. from its ``OUTPUT_DIR/config.yaml``.
        weights: the run's checkpoint (``model_final.pth``).
    Returns:
        (config path, weights path).
    """
    if not os.path.isfile(weights):
        raise CanuError(f"checkpoint {weights!r} does not exist: give the run's model_final.pth (--weights)")
    checkpoint = safe_load_file(None, weights)
    if "model" not in checkpoint:
        raise CanuError(f"{weights} has no 'model' entry: it was not written by fast-reid's Checkpointer")
    state = baseline_state(cfg.MODEL.META_ARCHITECTURE, checkpoint["model"], mmt_net, ssg_full_body)
    os.makedirs(output_dir, exist_ok=True)
    model_path = os.path.join(output_dir, "model.pth")
    config_path = os.path.join(output_dir, "config.yaml")
    atomic_write(model_path, lambda f: torch.save({"model": state}, f))
    text = baseline_config(cfg, model_path).dump()
    atomic_write(config_path, lambda f: f.write(text), mode="w")
    return config_path, model_path


def load_baseline(config_file, device="cpu"):
    """fast-reid's own loading of an exported model: ``get_cfg()`` (fast-reid's keys only) +
    ``build_model`` + its Checkpointer's ``_load_model`` (what ``Checkpointer.load`` does, here with
    every tensor required to fit), in eval mode.

    Raises:
        CanuError: a tensor of the file does not fit the model (the export and config disagree).
    """
    from fastreid.config import get_cfg
    from fastreid.modeling import build_model
    from fastreid.utils.checkpoint import Checkpointer
    cfg = get_cfg()
    cfg.merge_from_file(config_file)
    cfg.MODEL.DEVICE = device
    model = build_model(cfg)
    incompatible = Checkpointer(model)._load_model(safe_load_file(None, cfg.MODEL.WEIGHTS))
    bad = list(incompatible.missing_keys) + list(incompatible.unexpected_keys) + \
        [k for k, *_ in incompatible.incorrect_shapes]
    if bad:
        raise CanuError(f"{cfg.MODEL.WEIGHTS} does not fit the model of {config_file}: {bad[:5]}")
    return model.eval(), cfg


def export_onnx(model, cfg, onnx_path, batch_size=1):
    """ONNX export as fast-reid's ``tools/deploy/onnx_export.py`` does it: the eval-mode Baseline on
    a (B, 3, H, W) tensor of ``INPUT.SIZE_TEST`` (the model subtracts the pixel mean itself), the
    TorchScript exporter; input ``images``, output ``features``, dynamic batch size."""
    import warnings
    height, width = cfg.INPUT.SIZE_TEST
    dummy = torch.zeros(batch_size, 3, height, width, device=next(model.parameters()).device)
    kwargs = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(model, (dummy,), onnx_path, input_names=["images"], output_names=["features"],
                          dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}},
                          do_constant_folding=True, **kwargs)
    return onnx_path
