"""``canu-train`` (= ``tools/train_net.py``): train or evaluate a fast-reid model with canu-plugin's
methods (fast-reid's train_net, extended).

    canu-train --config-file configs/synthetic/sup_synthA.yml
    canu-train --config-file ... --resume              # continue where it stopped
    canu-train --config-file ... --eval-only MODEL.WEIGHTS out/model_final.pth
    canu-train --config-file ... --num-gpus 2          # one process per GPU (gloo on CPU)
    canu-train --root /data/reid --config-file ...     # datasets under /data/reid (default: $FASTREID_DATASETS)

``--config-file`` takes a path, or the name of a shipped config (``configs/...``), found from any
folder (:func:`canu_plugin.config_path`).
"""
import argparse
import logging
import sys

import canu_plugin  # noqa: F401  (compat fixes + registration into fast-reid's registries)
from canu_plugin.engine import Trainer, seed_from_config, set_datasets_root, setup_cfg
from canu_plugin.errors import user_errors
from canu_plugin.resources import config_path
from canu_plugin.threads import apply_env_threads
from fastreid.engine import default_argument_parser, default_setup, launch
from fastreid.utils import comm
from fastreid.utils.logger import setup_logger


def setup(args):
    """Config from file + command line, then fast-reid's logging/output set-up."""
    if getattr(args, "root", None):  # every process (launch may spawn them) reads the datasets from --root
        set_datasets_root(args.root)
    if args.config_file:  # a shipped name -> its path (fast-reid's default_setup reads the file too)
        args.config_file = config_path(args.config_file)
    cfg = setup_cfg(args.config_file, args.opts)
    default_setup(cfg, args)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="canu_plugin")  # into log.txt too
    seed_from_config(cfg)  # SEED >= 0: a reproducible run (fast-reid seeds randomly)
    threads = apply_env_threads()  # MKL_NUM_THREADS / OMP_NUM_THREADS (canu-bench --jobs sets them)
    logging.getLogger("canu_plugin").info(f"torch threads {threads}, loader workers {cfg.DATALOADER.NUM_WORKERS}")
    return cfg


def run(args):
    """One process's work (``launch`` calls it once per process): train, or ``--eval-only``."""
    with user_errors():
        cfg = setup(args)
        if args.eval_only:
            return Trainer.evaluate_weights(cfg)
        trainer = Trainer(cfg)
        trainer.resume_or_load(resume=args.resume)
        return trainer.train()


def parser():
    """fast-reid's ``default_argument_parser`` with this program's description and ``--root`` (as
    canu-bench and canu-synth have it)."""
    p = default_argument_parser()
    p.description, p.formatter_class = __doc__, argparse.RawDescriptionHelpFormatter
    p.add_argument("--root", default=None, metavar="DIR", help="dataset root: the folder that holds the datasets "
                   "(Market-1501-v15.09.15, DukeMTMC-reID, MSMT17_V2, ...); default: $FASTREID_DATASETS, else datasets")
    return p


def main(argv=None):
    """Parse the command line and run on ``--num-gpus`` processes; returns the exit code."""
    args = parser().parse_args(argv)
    if args.root:  # before launch: spawned processes inherit $FASTREID_DATASETS
        set_datasets_root(args.root)
    print("Command Line Args:", args, file=sys.stderr)
    with user_errors():
        launch(run, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
               dist_url=args.dist_url, args=(args,))
    return 0


if __name__ == "__main__":
    sys.exit(main())
