#!/usr/bin/env python
"""Choose CLUSTERING.K1 / EPS (fixed rule) or K1 / RHO (quantile rules) on the labelled SOURCE domain.

    python tools/tune_clustering.py --config-file configs/synthetic/sup_synthA.yml \
        --weights logs/synthetic/sup_synthA/model_final.pth --out docs/tuning_synthA.md

The source model's features of the source test identities (query + gallery, no distractors) are
clustered with every combination and scored against the source's ground truth
(``canu_plugin.bench.tune``); the target's labels are never read.
"""
import argparse
import json
import sys

import canu_plugin  # noqa: F401
from canu_plugin.bench.tune import markdown, sweep
from canu_plugin.errors import user_errors


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, help="the source model's config")
    p.add_argument("--weights", required=True, help="the source model's checkpoint")
    p.add_argument("--dataset", default="", help="source dataset (default: the config's DATASETS.NAMES[0])")
    p.add_argument("--k1", type=int, nargs="+", default=[6, 8, 10, 13, 16, 21])
    p.add_argument("--eps", type=float, nargs="+", default=[0.4, 0.45, 0.5, 0.55, 0.6, 0.65])
    p.add_argument("--rho", type=float, nargs="+", default=[1e-3, 2e-3, 4e-3, 6e-3, 8e-3, 1.2e-2])
    p.add_argument("--min-samples", type=int, default=4)
    p.add_argument("--out", default="", help="markdown report (also printed)")
    p.add_argument("--opts", nargs="*", default=[], help="KEY VALUE overrides of the config")
    return p.parse_args(argv)


def source_features(args):
    """(features (N, D), ground-truth ids (N,)) of the source test identities."""
    from fastreid.utils.checkpoint import Checkpointer
    from canu_plugin.data.datasets import test_items
    from canu_plugin.engine import Trainer, datasets_root, setup_cfg
    from canu_plugin.engine.features import extract_features
    cfg = setup_cfg(args.config_file, [*args.opts, "MODEL.BACKBONE.PRETRAIN", "False"])
    name = args.dataset or cfg.DATASETS.NAMES[0]
    query, gallery = test_items(name, datasets_root())
    items = [it for it in query + gallery if it[1] > 0]  # 0 / -1: distractors and junk
    model = Trainer.build_model(cfg)
    Checkpointer(model).load(args.weights)
    return extract_features(model, items, cfg).numpy(), [it[1] for it in items], name


def main(argv=None):
    args = parse_args(argv)
    feats, gt, name = source_features(args)
    base = {"min_samples": args.min_samples}
    fixed = sweep(feats, gt, {"k1": args.k1, "eps": args.eps}, base)
    quantile = sweep(feats, gt, {"k1": args.k1, "rho": args.rho},
                     {**base, "eps_rule": "quantile", "dist_norm": "row_max"})
    text = (f"Clustering sweep on the source domain {name} (test identities, {len(gt)} images, "
            f"{len(set(gt))} ids), model {args.weights}, min_samples {args.min_samples}.\n\n"
            f"Fixed eps (EPS_RULE fixed, DIST_NORM none), best ari_all first:\n\n{markdown(fixed)}\n\n"
            f"Quantile eps (EPS_RULE quantile, DIST_NORM row_max: MMT / SSG's rule), best first:\n\n"
            f"{markdown(quantile)}\n")
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
        with open(args.out.rsplit(".", 1)[0] + ".json", "w") as f:
            json.dump({"fixed": fixed, "quantile": quantile}, f, indent=1)


if __name__ == "__main__":
    with user_errors():
        sys.exit(main())
