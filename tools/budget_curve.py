#!/usr/bin/env python
"""Where a method's target mAP levels off with the training budget (canu_plugin/bench/budget.py).

    python tools/budget_curve.py RUN_DIR [RUN_DIR ...] [--iters-per-epoch 17] [--tolerance 1.0] [--out F.md]

Each RUN_DIR is one seed's run (its OUTPUT_DIR; the seed is read from its config.yaml) of the same
config, trained for the longest budget with a constant learning rate and TEST.EVAL_PERIOD > 0, e.g.

    canu-train --config-file configs/synthetic/uda_pseudo_A2B.yml MODEL.WEIGHTS <source>/model_final.pth \\
        SEED 0 SOLVER.MAX_EPOCH 24 TEST.EVAL_PERIOD 2 OUTPUT_DIR runs/pseudo_s0
"""
import argparse
import os
import sys

import yaml

from canu_plugin.bench.budget import curve, curve_table, levelled_off
from canu_plugin.errors import CanuError, user_errors


def _seed(out):
    path = os.path.join(out, "config.yaml")
    if not os.path.isfile(path):
        raise CanuError(f"{path} is missing: pass the OUTPUT_DIR of a finished run")
    with open(path) as f:
        return int(yaml.safe_load(f)["SEED"])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="OUTPUT_DIRs of one config's runs, one per seed")
    p.add_argument("--metric", default="mAP")
    p.add_argument("--iters-per-epoch", type=int, default=None, help="also print the steps of each budget")
    p.add_argument("--tolerance", type=float, default=1.0, help="levelled off: mean gain still to come below this")
    p.add_argument("--out", default="", help="also write the table (markdown) here")
    a = p.parse_args(argv)
    with user_errors():
        rows = curve({_seed(r): r for r in a.runs}, a.metric)
        text = (curve_table(rows, a.iters_per_epoch, a.metric) + f"\n\nLevelled off (mean gain still to come < "
                f"{a.tolerance:g} {a.metric} points) at epoch {levelled_off(rows, a.tolerance)}.\n")
        print(text)
        if a.out:
            with open(a.out, "w") as f:
                f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
