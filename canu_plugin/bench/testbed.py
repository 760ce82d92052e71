"""A synthetic testbed: every knob that makes one SynthA -> SynthB benchmark, in one YAML (or JSON) file
(``configs/synthetic/testbeds/``).

The synthetic setting's shipped configs describe the methods; a testbed describes the data and what
every run starts from (docs/bench/testbed.md has the criteria a testbed must meet):

- ``domains``: generator arguments of both domains (:func:`canu_plugin.data.synthetic.generate_domain`:
  identities, images per camera, camera shift, camera effects beyond colour, id-camera correlation,
  distractors, generated image size); ``source`` / ``target``: the same keys for SynthA / SynthB only;
- ``seed``: None (the default): each benchmark seed draws its own SynthA / SynthB (data seed = run seed),
  since the regime of one draw did not hold on another; an int: one draw, that data seed, for every run;
- ``input_size``: (H, W) the networks see (``INPUT.SIZE_TRAIN`` / ``SIZE_TEST``; None: the configs' 64x32);
- ``epochs``: {method: SOLVER.MAX_EPOCH}, the training budget per row (the configs' STEPS stay);
  ``opts``: {method or "all": [KEY, VALUE, ...]} any other override;
- ``pretrain``: the ImageNet stand-in (:mod:`.pretrain`), None for training from scratch.

Knobs left out keep the defaults (:data:`DEFAULTS`), which give the committed benchmark's setting:
``{}`` is SynthA -> SynthB as ``canu-bench`` runs it, from scratch.
"""
import copy
import hashlib
import json
import os

from canu_plugin.errors import CanuError

DOMAIN_KEYS = ("num_train_ids", "num_test_ids", "num_cameras", "images_per_camera", "camera_shift",
               "id_camera_correlation", "num_distractors", "image_size", "camera_effects",
               # canu_plugin.data.synthetic_knobs, off by default (an explicit off value is dropped on load)
               "identity_detail", "shared_detail_vocabulary", "visits", "camera_gaps", "camera_low_level")
PRETRAIN_DEFAULTS = {
    "domains": 4,               # SynthPre0.. (<= 8): 6 cameras each, their own camera draws
    "num_train_ids": 300,       # per domain (identities are fresh draws, none of SynthA's / SynthB's)
    "num_test_ids": 20,         # per domain; SynthPre0's test split is the pre-training's sanity mAP
    "images_per_camera": [2, 4],
    "camera_shift": 1.0,
    "id_camera_correlation": 0.3,
    "num_distractors": 0,
    "image_size": [128, 64],
    "camera_effects": {"viewpoint": 0.5, "pose": 0.5, "occlusion": 0.3, "resolution": 0.5, "illumination": 0.5},
    "identity_detail": None,    # the knobs of canu_plugin.data.synthetic_knobs: off
    "shared_detail_vocabulary": False,
    "visits": 0.0,
    "camera_gaps": None,
    "camera_low_level": None,
    "epochs": 10,               # supervised identity classification, configs/synthetic/pretrain.yml
    "seed": 0,                  # data and training seed: one backbone per testbed, shared by every run
    "opts": [],                 # further overrides of the pre-training run
}
DEFAULTS = {"name": "default", "seed": None, "domains": {}, "source": {}, "target": {}, "input_size": None,
            "epochs": {}, "opts": {}, "pretrain": None}


def _unknown(given, known, where):
    bad = sorted(set(given) - set(known))
    if bad:
        raise CanuError(f"testbed: unknown key(s) {bad} in {where}; the keys are {sorted(known)} "
                        "(docs/bench/testbed.md)")


def load_testbed(spec):
    """A validated testbed with every default filled in (a new dict).

    Args:
        spec: a dict, or the path of a YAML / JSON file holding one (a shipped name such as
            ``configs/synthetic/testbeds/pretrained.yml`` is found as the configs are).
    Raises:
        CanuError: an unreadable file or an unknown key.
    """
    if isinstance(spec, (str, os.PathLike)):
        import yaml
        from canu_plugin.resources import config_path
        path = os.fspath(spec) if os.path.isfile(spec) else config_path(os.fspath(spec))
        try:
            with open(path) as f:
                spec = yaml.safe_load(f) or {}
        except (OSError, yaml.YAMLError) as e:
            raise CanuError(f"testbed file {path}: cannot read it as YAML / JSON ({e})") from None
    _unknown(spec, DEFAULTS, "the testbed")
    tb = copy.deepcopy(DEFAULTS)
    tb.update(copy.deepcopy(spec))
    for part in ("domains", "source", "target"):
        _unknown(tb[part], DOMAIN_KEYS, f"'{part}'")
    if tb["pretrain"] is not None:
        _unknown(tb["pretrain"], PRETRAIN_DEFAULTS, "'pretrain'")
        tb["pretrain"] = {**copy.deepcopy(PRETRAIN_DEFAULTS), **tb["pretrain"]}
        if not 1 <= int(tb["pretrain"]["domains"]) <= 8:
            raise CanuError("testbed: pretrain.domains must be in 1..8 (SynthPre0..SynthPre7)")
    _drop_off_knobs(tb)
    return tb


def _drop_off_knobs(tb):
    """Remove the generator knobs (:data:`canu_plugin.data.synthetic_knobs.KNOBS`) given with an off value
    (``visits: 0``, ``identity_detail: {}`` ...), in place, so that a knob written at its default
    changes no fingerprint: from ``domains`` always, from ``source`` / ``target`` where ``domains``
    leaves the knob off too; ``pretrain``'s go back to their defaults."""
    from canu_plugin.data.synthetic_knobs import KNOBS, knob_args
    def off(part, key):
        """Whether ``part[key]`` leaves the knob off."""
        if key == "shared_detail_vocabulary":  # no effect without detail, but the detail may come from domains
            return part[key] in (None, False)
        try:
            return key not in knob_args({key: part[key]}, "testbed", 6)
        except CanuError:  # a bad value: the generator reports it
            return False
    for part in ("domains", "source", "target"):
        for key in [k for k in KNOBS if k in tb[part] and off(tb[part], k)]:
            if part == "domains" or key not in tb["domains"]:
                del tb[part][key]
    for key in [k for k in KNOBS if tb["pretrain"] and off(tb["pretrain"], k)]:
        tb["pretrain"][key] = copy.deepcopy(PRETRAIN_DEFAULTS[key])


def set_knob(tb, dotted, value):
    """Set ``a.b.c`` = ``value`` (JSON text, else a string) in a testbed spec dict, in place."""
    try:
        value = json.loads(value)
    except ValueError:
        pass
    node = tb
    *path, last = dotted.split(".")
    for part in path:
        if node.get(part) is None:
            node[part] = {}
        node = node[part]
    node[last] = value
    return tb


def knobs(tb):
    """The knobs that differ from :data:`DEFAULTS` (and, in ``pretrain``, from its defaults): a dict."""
    out = {k: v for k, v in tb.items() if k != "name" and v != DEFAULTS[k]}
    if tb.get("pretrain"):
        out["pretrain"] = {k: v for k, v in tb["pretrain"].items() if v != PRETRAIN_DEFAULTS[k]}
    return out


def fingerprint(obj):
    """Eight hex digits of a JSON-able object's SHA-1 (sorted keys): names a cache entry."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:8]


def data_seed(tb, run_seed):
    """The data seed of run seed ``run_seed``'s SynthA / SynthB: the run seed itself, unless the testbed
    fixes one draw (``seed`` an int)."""
    return int(run_seed) if tb["seed"] is None else int(tb["seed"])


def domain_kwargs(tb, role, run_seed=0):
    """``generate_domain`` keyword arguments of SynthA (``role`` "source") or SynthB ("target") for the
    runs of seed ``run_seed``."""
    return {**tb["domains"], **tb[role], "seed": data_seed(tb, run_seed)}


def data_key(tb, run_seed=None):
    """Fingerprint of what the testbed's SynthA and SynthB are made from: of the draw of ``run_seed``, or,
    with None, of the recipe of every draw (two testbeds with the same key have the same images, whatever
    their budgets and overrides)."""
    if run_seed is None and tb["seed"] is None:
        return fingerprint({role: {**tb["domains"], **tb[role], "seed": "run seed"} for role in ("source", "target")})
    return fingerprint({role: domain_kwargs(tb, role, run_seed or 0) for role in ("source", "target")})


def draw_root(folder, tb, run_seed):
    """Dataset root of run seed ``run_seed``'s draw in a testbed folder: ``<folder>/datasets/draw_<data seed>``."""
    return os.path.join(folder, "datasets", f"draw_{data_seed(tb, run_seed)}")


def generate_data(tb, root, run_seed=0):
    """SynthA and SynthB of the testbed's draw for ``run_seed`` under ``root`` (kept when already
    generated); their stats."""
    from canu_plugin.data.synthetic import generate_domain
    return {name: generate_domain(root, name, **domain_kwargs(tb, role, run_seed))
            for name, role in (("SynthA", "source"), ("SynthB", "target"))}


def method_opts(tb, method, pretrained=None):
    """The testbed's overrides of one run of ``method``: a KEY VALUE list (empty for the defaults).

    Args:
        pretrained: the pre-trained backbone file (:func:`.pretrain.ensure_pretrained`) or None.
    """
    method = "source" if method == "source_b" else method  # MMT's second source model is a source run
    opts = []
    if pretrained:
        opts += ["MODEL.BACKBONE.PRETRAIN", "True", "MODEL.BACKBONE.PRETRAIN_PATH", pretrained]
    if tb["input_size"]:
        size = json.dumps([int(v) for v in tb["input_size"]])
        opts += ["INPUT.SIZE_TRAIN", size, "INPUT.SIZE_TEST", size]
    if method in tb["epochs"]:
        opts += ["SOLVER.MAX_EPOCH", str(int(tb["epochs"][method]))]  # fast-reid evaluates the last epoch too
    return opts + [str(o) for o in tb["opts"].get("all", [])] + [str(o) for o in tb["opts"].get(method, [])]


__all__ = ["DOMAIN_KEYS", "DEFAULTS", "PRETRAIN_DEFAULTS", "load_testbed", "set_knob", "knobs", "fingerprint",
           "data_seed", "domain_kwargs", "data_key", "draw_root", "generate_data", "method_opts"]
