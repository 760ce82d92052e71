"""``canu-export`` (= ``tools/export_model.py``): a trained canu-plugin model as a plain fast-reid
``Baseline`` (``model.pth`` + ``config.yaml``), for fast-reid's deployment tools; ``--onnx`` also
writes ``model.onnx`` the way fast-reid's ``tools/deploy/onnx_export.py`` does.

    canu-export --config-file logs/uda/canu_M2D/config.yaml --weights logs/uda/canu_M2D/model_final.pth \\
                --output export/canu_M2D --onnx
    canu-export --config-file ... --weights ... --output ... --mmt-net teacher2     # MMT: which network
    canu-export --config-file ... --weights ... --output ... --ssg-full-body        # SSG: full-body branch

``--config-file`` is the run's config (its OUTPUT_DIR/config.yaml, or the yml it was trained with);
trailing ``KEY VALUE`` pairs override it. The export runs on the CPU and writes ``MODEL.DEVICE cpu``
(add ``MODEL.DEVICE cuda`` for a GPU config). See :mod:`canu_plugin.export` for what each method keeps.
"""
import argparse
import os
import sys

import canu_plugin  # noqa: F401  (registers the plugin's meta-architectures)
from canu_plugin.engine import setup_cfg
from canu_plugin.errors import user_errors
from canu_plugin.export import MMT_NETS, export_baseline, export_onnx, load_baseline


def parse_args(argv=None):
    """Command-line options of the export."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, help="the run's config (OUTPUT_DIR/config.yaml)")
    p.add_argument("--weights", required=True, help="the run's checkpoint (model_final.pth)")
    p.add_argument("--output", required=True, help="folder for model.pth, config.yaml (and model.onnx)")
    p.add_argument("--mmt-net", default="teacher1", choices=MMT_NETS, help="MMT: the network to export")
    p.add_argument("--ssg-full-body", action="store_true", help="SSG: export the full-body branch")
    p.add_argument("--onnx", action="store_true", help="also write model.onnx (torch.onnx, as fast-reid does)")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return p.parse_args(argv)


def export(argv=None):
    """Export, check that fast-reid's Baseline loads the result, and print what was written."""
    a = parse_args(argv)
    cfg = setup_cfg(a.config_file, ["MODEL.DEVICE", "cpu", *a.opts])
    config_file, model_file = export_baseline(cfg, a.weights, a.output, a.mmt_net, a.ssg_full_body)
    model, plain_cfg = load_baseline(config_file)
    print(f"fast-reid Baseline ({cfg.MODEL.META_ARCHITECTURE} -> Baseline): {model_file}\nconfig: {config_file}")
    if a.onnx:
        print(f"onnx: {export_onnx(model, plain_cfg, os.path.join(a.output, 'model.onnx'))}")
    return 0


def main(argv=None):
    """``canu-export``: :func:`export`, a CanuError reported in one line; returns the exit code."""
    with user_errors():
        return export(argv)


if __name__ == "__main__":
    sys.exit(main())
