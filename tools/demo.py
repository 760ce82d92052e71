#!/usr/bin/env python
"""`make demo`: the main job on the built-in synthetic data, on CPU, in minutes.

1. generates the synthetic domains SynthA and SynthB (Market-1501 layout) if absent;
2. trains fast-reid's supervised Baseline on SynthA (configs/synthetic/sup_synthA.yml) and
   evaluates it on SynthA's test split and on SynthB (direct transfer): the cross-domain drop is
   the problem the unsupervised methods attack;
3. adapts that model to SynthB with cluster pseudo-labels (configs/synthetic/uda_pseudo_A2B.yml),
   and with pseudo-labels + CANU's conditional camera discriminator (uda_canu_A2B.yml);
4. prints one table (and writes it to <output>/demo_results.md).

Finished runs are not redone (each run resumes from its own output folder).
"""
import argparse
import os
import sys
import time

import canu_plugin  # noqa: F401
from canu_plugin.data.synthetic import generate_all
from canu_plugin.engine import Trainer, set_datasets_root, setup_cfg
from canu_plugin.errors import user_errors
from fastreid.utils.env import seed_all_rng
from fastreid.utils.logger import setup_logger
from tabulate import tabulate

# (row name, config, the row whose final model initialises this one)
ROWS = [
    ("supervised on SynthA (source only)", "configs/synthetic/sup_synthA.yml", None),
    ("pseudo-label baseline SynthA->SynthB", "configs/synthetic/uda_pseudo_A2B.yml", 0),
    ("pseudo-label baseline + CANU SynthA->SynthB", "configs/synthetic/uda_canu_A2B.yml", 0),
]


def train(config, opts, output_dir, seed=0):
    """Train one config in this process; returns fast-reid's results dict {dataset: metrics}."""
    seed_all_rng(seed)  # the same numbers on every run of the demo (CPU)
    cfg = setup_cfg(config, list(opts) + ["OUTPUT_DIR", output_dir])
    os.makedirs(output_dir, exist_ok=True)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=True)  # a finished run only evaluates
    results = trainer.train()
    return results if "Rank-1" not in results else {cfg.DATASETS.TESTS[0]: results}


def table(rows):
    """Markdown table: one line per (method, test set)."""
    lines = []
    for name, results, seconds in rows:
        for ds, m in results.items():
            lines.append([name, ds, m["Rank-1"], m["Rank-5"], m["mAP"], m["mINP"], f"{seconds:.0f}"])
    return tabulate(lines, headers=["method", "test set", "R1", "R5", "mAP", "mINP", "train s"],
                    tablefmt="github", floatfmt=".1f")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=os.getenv("FASTREID_DATASETS", "datasets"))
    parser.add_argument("--output", default="logs/demo")
    args = parser.parse_args()
    set_datasets_root(args.root)
    os.makedirs(args.output, exist_ok=True)
    setup_logger(args.output)
    start = time.time()
    generate_all(args.root)
    rows, outs = [], []
    for name, config, init_from in ROWS:
        t0 = time.time()
        outs.append(os.path.join(args.output, os.path.splitext(os.path.basename(config))[0]))
        opts = [] if init_from is None else ["MODEL.WEIGHTS", os.path.join(outs[init_from], "model_final.pth")]
        rows.append((name, train(config, opts, outs[-1]), time.time() - t0))
    text = table(rows)
    with open(os.path.join(args.output, "demo_results.md"), "w") as f:
        f.write(text + "\n")
    print("\n" + text)
    print(f"\ndemo wall time: {time.time() - start:.0f} s; table saved to {args.output}/demo_results.md")


if __name__ == "__main__":
    with user_errors():
        sys.exit(main())
