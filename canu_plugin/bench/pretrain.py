"""The ImageNet stand-in: one backbone pre-trained on generated person images, per testbed.

The papers start every run (source model, ACAN, the supervised upper bound) from ImageNet weights;
the synthetic benchmark has none to download. This stage generates the pre-training domains
``SynthPre0..`` (style ``SynthPre``: every clothing palette, strong camera shifts and camera effects,
identities drawn from streams of their own, so none is one of SynthA's or SynthB's), trains fast-reid's
supervised Baseline on them (``configs/synthetic/pretrain.yml``, identity classification over all of
them), and keeps only the final model's backbone, in the format fast-reid's ``build_resnet_backbone``
reads from ``MODEL.BACKBONE.PRETRAIN_PATH``: a plain state dict of the ResNet's own tensor names
(``conv1.weight``, ``layer1.0.bn1.running_mean`` ...), no ``backbone.`` prefix, no heads.

Cache: ``<folder>/pretrain/<DEPTH>_s<seed>_<hash>/backbone.pth`` with ``backbone.provenance.json``
beside it (the generator arguments of every pre-training domain, the training config and overrides
with the seed and budget, the architecture, the wall time and a sanity mAP). A second call with the
same provenance returns the cached file without training; an interrupted pre-training resumes from its
last epoch. The loader (:mod:`canu_plugin.pretrained`) refuses the file for another architecture.
"""
import json
import os

import torch

from canu_plugin.bench.runner import train_child
from canu_plugin.bench.testbed import fingerprint
from canu_plugin.checkpoint import atomic_write, link_or_copy, state_dict_of
from canu_plugin.errors import CanuError
from canu_plugin.pretrained import architecture, provenance_path

PRETRAIN_CONFIG = "configs/synthetic/pretrain.yml"
GENERATOR_KEYS = ("num_train_ids", "num_test_ids", "images_per_camera", "camera_shift", "id_camera_correlation",
                  "num_distractors", "image_size", "camera_effects", "identity_detail", "shared_detail_vocabulary",
                  "visits", "camera_gaps", "camera_low_level")  # the knobs are recorded in meta.json only when on
FORMAT = 1


def generate_pretrain_data(spec, root):
    """The pre-training domains ``SynthPre0..SynthPre<domains-1>`` under ``root`` (kept when there);
    returns their generator arguments (each meta.json's ``args``), in order."""
    from canu_plugin.data.synthetic import generate_domain
    out = []
    for k in range(int(spec["domains"])):
        s = generate_domain(root, f"SynthPre{k}", style="SynthPre", seed=int(spec["seed"]),
                            **{key: spec[key] for key in GENERATOR_KEYS})
        with open(os.path.join(s["path"], "meta.json")) as f:
            out.append(json.load(f)["args"])
    return out


def train_opts(spec, input_size=None):
    """Overrides of ``configs/synthetic/pretrain.yml`` for ``spec`` (without OUTPUT_DIR): a KEY VALUE list."""
    names = ", ".join(f'"SynthPre{k}"' for k in range(int(spec["domains"])))
    epochs = int(spec["epochs"])
    opts = ["DATASETS.NAMES", f"({names},)", "DATASETS.TESTS", '("SynthPre0",)', "SOLVER.MAX_EPOCH", str(epochs),
            "SOLVER.STEPS", f"[{max(1, round(0.8 * epochs))}]", "TEST.EVAL_PERIOD", str(epochs),
            "SEED", str(int(spec["seed"]))]
    if input_size:
        size = json.dumps([int(v) for v in input_size])
        opts += ["INPUT.SIZE_TRAIN", size, "INPUT.SIZE_TEST", size]
    return opts + [str(o) for o in spec.get("opts", [])]


def provenance(spec, root, input_size=None):
    """What makes the pre-trained backbone this one (a JSON-able dict); generates the data if absent."""
    from canu_plugin.engine.setup import setup_cfg
    from canu_plugin.resources import config_path
    opts = train_opts(spec, input_size)
    cfg = setup_cfg(config_path(PRETRAIN_CONFIG, user_paths=False), list(opts), freeze=False)
    return {"format": FORMAT, "config": PRETRAIN_CONFIG, "opts": opts, "arch": architecture(cfg),
            "data": generate_pretrain_data(spec, root)}


def write_backbone(checkpoint, path):
    """The ``backbone.*`` tensors of a fast-reid checkpoint, prefix removed, saved to ``path``
    (atomically). Returns the state dict ({name: tensor})."""
    state = state_dict_of(torch.load(checkpoint, map_location="cpu", weights_only=True))
    backbone = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    if not backbone:
        raise CanuError(f"{checkpoint} holds no backbone.* tensors: not a fast-reid model checkpoint")
    atomic_write(path, lambda f: torch.save(backbone, f))
    return backbone


def cached(weights, prov):
    """The provenance record beside ``weights`` when it was made with ``prov``, else None; CanuError
    when the folder holds weights made otherwise (a hash collision or an edited file)."""
    side = provenance_path(weights)
    if not (os.path.isfile(weights) and os.path.isfile(side)):
        return None
    with open(side) as f:
        record = json.load(f)
    if record.get("provenance") != prov:
        raise CanuError(f"{weights} was pre-trained with other settings ({side}): delete its folder to redo it")
    return record


def _copy_from(folders, subdir, weights, prov, log):
    """Hard-link (copy where links fail) an identical pre-trained backbone (same provenance) from another
    benchmark folder's cache to ``weights``; returns its record, or None when none of ``folders`` has one."""
    for other in folders:
        theirs = os.path.join(other, "pretrain", subdir, "backbone.pth")
        if os.path.abspath(theirs) == os.path.abspath(weights):
            continue
        try:
            record = cached(theirs, prov)
        except CanuError:
            continue
        if record is not None:
            os.makedirs(os.path.dirname(weights), exist_ok=True)
            link_or_copy(theirs, weights)
            atomic_write(provenance_path(weights), lambda f: f.write(json.dumps(record, indent=1)), mode="w")
            log(f"[pretrain] linked from {theirs} (same provenance)")
            return record
    return None


def ensure_pretrained(folder, spec, root, input_size=None, log=print, elsewhere=()):
    """The pre-trained backbone of a testbed: cached when made with the same provenance, else trained now.

    Args:
        folder: the benchmark's folder (the cache is ``folder/pretrain/``); spec: the testbed's
            ``pretrain`` (:data:`canu_plugin.bench.testbed.PRETRAIN_DEFAULTS`); root: the dataset root
            (the pre-training domains are generated there); input_size: (H, W) or None (the config's);
            elsewhere: other benchmark folders whose cache may hold the same backbone (linked, not retrained).
    Returns:
        dict: path (backbone.pth), cached (bool), wall_s (of the pre-training, also when cached),
        final (its evaluation on SynthPre0's test split), provenance.
    """
    prov = provenance(spec, root, input_size)
    subdir = f"{prov['arch']['DEPTH']}_s{int(spec['seed'])}_{fingerprint(prov)}"
    out = os.path.join(folder, "pretrain", subdir)
    weights = os.path.join(out, "backbone.pth")
    record = cached(weights, prov) or _copy_from(elsewhere, subdir, weights, prov, log)
    if record is not None:
        log(f"[pretrain] cached: {weights} (pre-trained in {record['wall_s']:.0f} s)")
        return dict(record, path=weights, cached=True)
    run = os.path.join(out, "run")
    os.makedirs(run, exist_ok=True)
    log(f"[pretrain] {len(prov['data'])} domain(s), {spec['epochs']} epoch(s) -> {weights}")
    code, wall = train_child(PRETRAIN_CONFIG, [*prov["opts"], "OUTPUT_DIR", run], os.path.join(run, "stdout.log"),
                             env=dict(os.environ, FASTREID_DATASETS=os.path.abspath(root)))
    if code != 0:
        raise CanuError(f"pre-training failed (exit {code}); see {os.path.join(run, 'stdout.log')}")
    write_backbone(os.path.join(run, "model_final.pth"), weights)
    from canu_plugin.engine.run_files import read_final_results
    final = (read_final_results(run) or {}).get("results", {}).get("SynthPre0")
    record = {"arch": prov["arch"], "provenance": prov, "wall_s": round(wall, 1), "final": final}
    atomic_write(provenance_path(weights), lambda f: f.write(json.dumps(record, indent=1)), mode="w")
    for name in os.listdir(run):  # the backbone is what is kept; the run's log and metrics stay
        if name.endswith(".pth") or name == "last_checkpoint":
            os.remove(os.path.join(run, name))
    log(f"[pretrain] done in {wall:.0f} s" + (f": SynthPre0 mAP {final['mAP']:.1f}" if final else ""))
    return dict(record, path=weights, cached=False)


__all__ = ["PRETRAIN_CONFIG", "generate_pretrain_data", "train_opts", "provenance", "write_backbone", "cached",
           "ensure_pretrained"]
