"""What ``tools/benchmark.py`` runs: settings (a source -> target pair with its configs) and the
methods compared on them, each a config plus what it starts from.

A run is one (method, seed). ``plan(setting, methods, seeds)`` orders them so that every run comes
after the runs it starts from (the source models), and adds those hidden runs when a chosen
method needs them.
"""
from dataclasses import dataclass, field

from canu_plugin.errors import CanuError


@dataclass(frozen=True)
class Method:
    """One row of the benchmark.

    Attributes:
        label: row name in the table.
        config: a shipped config's name (``configs/...``, found by :func:`canu_plugin.config_path`).
        family: "source", "clustering", "mmt", "ssg", "acan", "usl" or "upper": which plots it gets.
        init: None, "source" (MODEL.WEIGHTS = the source run of the same seed) or "source_pair"
            (MODEL.MMT.SOURCE_WEIGHTS = two source runs of different seeds).
        opts: extra KEY VALUE overrides.
        hidden: a helper run (second source model of MMT), not a table row.
    """
    label: str
    config: str
    family: str
    init: str = None
    opts: tuple = field(default_factory=tuple)
    hidden: bool = False


def _synthetic_methods():
    s = "configs/synthetic/"
    target = ("DATASETS.NAMES", '("SynthB",)', "DATASETS.TESTS", '("SynthB",)')
    return {
        "source": Method("fast-reid supervised, source only (direct transfer)", s + "sup_synthA.yml", "source"),
        "source_b": Method("second source model (MMT's net 2)", s + "sup_synthA.yml", "source", hidden=True),
        "pseudo": Method("pseudo-label baseline", s + "uda_pseudo_A2B.yml", "clustering", "source"),
        "adv": Method("pseudo-label baseline + Adv", s + "uda_adv_A2B.yml", "clustering", "source"),
        "canu": Method("pseudo-label baseline + CANU", s + "uda_canu_A2B.yml", "clustering", "source"),
        "mmt": Method("MMT", s + "mmt_A2B.yml", "mmt", "source_pair"),
        "adv_mmt": Method("MMT + Adv", s + "adv_mmt_A2B.yml", "mmt", "source_pair"),
        "canu_mmt": Method("CANU-MMT", s + "canu_mmt_A2B.yml", "mmt", "source_pair"),
        "ssg": Method("SSG", s + "ssg_A2B.yml", "ssg", "source"),
        "adv_ssg": Method("SSG + Adv", s + "adv_ssg_A2B.yml", "ssg", "source"),
        "canu_ssg": Method("CANU-SSG", s + "canu_ssg_A2B.yml", "ssg", "source"),
        "acan_triplet": Method("ACAN triplet only (intra-camera labels)", s + "acan_triplet.yml", "acan", opts=target),
        "acan_grl": Method("ACAN-GRL", s + "acan_grl.yml", "acan", opts=target),
        "acan_oce": Method("ACAN-OCE", s + "acan_oce.yml", "acan", opts=target),
        "acan_ace": Method("ACAN-ACE", s + "acan_ace.yml", "acan", opts=target),
        "usl_pseudo": Method("USL: pseudo-label baseline (no source model)", s + "usl_pseudo_B.yml", "usl"),
        "usl_adv": Method("USL: pseudo-label baseline + Adv", s + "usl_adv_B.yml", "usl"),
        "usl_canu": Method("USL: pseudo-label baseline + CANU", s + "usl_canu_B.yml", "usl"),
        "upper": Method("fast-reid supervised on the target (upper bound)", s + "sup_synthB.yml", "upper"),
    }


CAMERA_NORM_OPTS = ("CLUSTERING.CAMERA_NORM", "True", "CLUSTERING.DISCARD_SINGLE_CAMERA", "True")
RIVALS = {"pseudo_cn": "pseudo", "canu_cn": "canu", "mmt_cn": "mmt"}  # row -> the row it adds camera normalization to


def with_camera_norm(methods):
    """``methods`` plus the rival rows of :data:`RIVALS`: each the same config and start as its base row, with
    Song et al.'s debiased pseudo-labelling (per-camera feature normalization before clustering, single-camera
    clusters discarded: :data:`CAMERA_NORM_OPTS`). Bases the setting lacks add no row."""
    out = dict(methods)
    for key, base in RIVALS.items():
        if base in methods:
            m = methods[base]
            out[key] = Method(f"{m.label} + camera norm.", m.config, m.family, m.init, (*m.opts, *CAMERA_NORM_OPTS))
    return out


def _synthetic_video_methods():
    s = "configs/synthetic/video/"
    return {
        "acan_triplet": Method("ACAN triplet only (tracklets, intra-camera labels)", s + "acan_triplet.yml", "acan"),
        "acan_grl": Method("ACAN-GRL (tracklets)", s + "acan_grl.yml", "acan"),
        "acan_oce": Method("ACAN-OCE (tracklets)", s + "acan_oce.yml", "acan"),
        "acan_ace": Method("ACAN-ACE (tracklets)", s + "acan_ace.yml", "acan"),
    }


def _generate_images(root):
    from canu_plugin.data.synthetic import generate_all
    return generate_all(root)


def _generate_video(root):
    from canu_plugin.data.video.synthetic_video import generate_video_all
    return generate_video_all(root, names=("SynthVidB",))


def _real_methods(src, tgt, src_ds, tgt_ds):
    """The methods of one real-data pair (CANU-ReID Tables I and II run MMT and SSG, with and
    without CANU, on all four; its +Adv ablation, Table IV, on M->D and D->M only)."""
    pair = f"{src}2{tgt}"
    methods = {
        "source": Method("fast-reid supervised, source only (direct transfer)", f"configs/{src_ds}/sup_R50.yml",
                         "source", opts=("DATASETS.TESTS", f'("{src_ds}", "{tgt_ds}")')),
        "source_b": Method("second source model (MMT's net 2)", f"configs/{src_ds}/sup_R50.yml", "source",
                           opts=("DATASETS.TESTS", f'("{tgt_ds}",)'), hidden=True),
        "pseudo": Method("pseudo-label baseline", f"configs/uda/pseudo_{pair}.yml", "clustering", "source"),
        "adv": Method("pseudo-label baseline + Adv", f"configs/uda/adv_{pair}.yml", "clustering", "source"),
        "canu": Method("pseudo-label baseline + CANU", f"configs/uda/canu_{pair}.yml", "clustering", "source"),
        "mmt": Method("MMT", f"configs/mmt/mmt_{pair}.yml", "mmt", "source_pair"),
        "adv_mmt": Method("MMT + Adv", f"configs/mmt/adv_mmt_{pair}.yml", "mmt", "source_pair"),
        "canu_mmt": Method("CANU-MMT", f"configs/mmt/canu_mmt_{pair}.yml", "mmt", "source_pair"),
        "ssg": Method("SSG", f"configs/ssg/ssg_{pair}.yml", "ssg", "source"),
        "adv_ssg": Method("SSG + Adv", f"configs/ssg/adv_ssg_{pair}.yml", "ssg", "source"),
        "canu_ssg": Method("CANU-SSG", f"configs/ssg/canu_ssg_{pair}.yml", "ssg", "source"),
        "acan_triplet": Method("ACAN triplet only", f"configs/acan/{tgt_ds}_triplet.yml", "acan"),
        "acan_grl": Method("ACAN-GRL", f"configs/acan/{tgt_ds}_grl.yml", "acan"),
        "acan_oce": Method("ACAN-OCE", f"configs/acan/{tgt_ds}_oce.yml", "acan"),
        "acan_ace": Method("ACAN-ACE", f"configs/acan/{tgt_ds}_ace.yml", "acan"),
        "upper": Method("fast-reid supervised on the target (upper bound)", f"configs/{tgt_ds}/sup_R50.yml", "upper"),
    }
    return methods


SETTINGS = {  # "generate": makes the synthetic datasets when absent; "default_methods": the rows of a plain run
    "synthetic": dict(target="SynthB", datasets=("SynthA", "SynthB"), methods=with_camera_norm(_synthetic_methods()),
                      generate=_generate_images),
    "synthetic-video": dict(target="SynthVidB", datasets=("SynthVidB",), methods=_synthetic_video_methods(),
                            generate=_generate_video,
                            default_methods=("acan_triplet", "acan_grl", "acan_oce", "acan_ace")),
    "M2D": dict(target="DukeMTMC", datasets=("Market1501", "DukeMTMC"),
                methods=with_camera_norm(_real_methods("M", "D", "Market1501", "DukeMTMC"))),
    "D2M": dict(target="Market1501", datasets=("DukeMTMC", "Market1501"),
                methods=with_camera_norm(_real_methods("D", "M", "DukeMTMC", "Market1501"))),
    "M2MSMT": dict(target="MSMT17", datasets=("Market1501", "MSMT17"),
                   methods=with_camera_norm(_real_methods("M", "MSMT", "Market1501", "MSMT17"))),
    "D2MSMT": dict(target="MSMT17", datasets=("DukeMTMC", "MSMT17"),
                   methods=with_camera_norm(_real_methods("D", "MSMT", "DukeMTMC", "MSMT17"))),
}
DEFAULT_METHODS = ("source", "pseudo", "adv", "canu", "mmt", "adv_mmt", "canu_mmt", "ssg", "adv_ssg", "canu_ssg",
                   "acan_triplet", "acan_grl", "acan_oce", "acan_ace", "pseudo_cn", "canu_cn", "mmt_cn",
                   "usl_pseudo", "usl_adv", "usl_canu", "upper")
SECOND_SOURCE_SEED = 100  # MMT's net 2 starts from the source model trained with seed + 100


def benchmark_seed(key, seed):
    """The benchmark seed a run belongs to: its own seed, except for MMT's second source model
    (``source_b``), trained with seed + :data:`SECOND_SOURCE_SEED` for benchmark seed ``seed``: it trains on
    that seed's data draw."""
    return seed - SECOND_SOURCE_SEED if key == "source_b" and seed >= SECOND_SOURCE_SEED else seed


def default_methods(setting):
    """The rows of a plain run: the setting's own ``default_methods``, else :data:`DEFAULT_METHODS`
    that the setting has."""
    if "default_methods" in SETTINGS[setting]:
        return list(SETTINGS[setting]["default_methods"])
    return [m for m in DEFAULT_METHODS if m in SETTINGS[setting]["methods"]]


def plan(setting, methods, seeds):
    """Runs to do, dependencies first.

    Args:
        setting: a key of :data:`SETTINGS`; methods: method names; seeds: ints.
    Returns:
        list of (method name, seed, {dependency: (method name, seed)}), seed-major order (every
        method of the first seed, then the next seed), so that a cut sweep has complete seeds.
    """
    if setting not in SETTINGS:
        raise CanuError(f"unknown setting {setting!r}: choose one of {sorted(SETTINGS)}")
    table = SETTINGS[setting]["methods"]
    unknown = [m for m in methods if m not in table]
    if unknown:
        raise CanuError(f"unknown method(s) {unknown}: choose from {[k for k, v in table.items() if not v.hidden]}")
    runs = []
    for seed in seeds:
        for name in methods:
            deps = {}
            if table[name].init == "source":
                deps = {"source": ("source", seed)}
            elif table[name].init == "source_pair":
                deps = {"source": ("source", seed), "source_b": ("source_b", seed + SECOND_SOURCE_SEED)}
            for dep in deps.values():
                if (dep[0], dep[1], {}) not in runs:
                    runs.append((dep[0], dep[1], {}))
            if (name, seed, deps) not in runs:
                runs.append((name, seed, deps))
    return runs
