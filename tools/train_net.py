#!/usr/bin/env python
"""Train or evaluate a fast-reid model with canu-plugin's methods (fast-reid's train_net, extended).

    python tools/train_net.py --config-file configs/synthetic/sup_synthA.yml
    python tools/train_net.py --config-file ... --resume              # continue where it stopped
    python tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS out/model_final.pth
    python tools/train_net.py --config-file ... --num-gpus 2          # one process per GPU (gloo on CPU)
"""
import sys

import canu_plugin  # noqa: F401  (compat fixes + registration into fast-reid's registries)
from canu_plugin.engine import Trainer, seed_from_config, setup_cfg
from canu_plugin.errors import user_errors
from fastreid.engine import default_argument_parser, default_setup, launch
from fastreid.utils import comm
from fastreid.utils.logger import setup_logger


def setup(args):
    """Config from file + command line, then fast-reid's logging/output set-up."""
    cfg = setup_cfg(args.config_file, args.opts)
    default_setup(cfg, args)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="canu_plugin")  # into log.txt too
    seed_from_config(cfg)  # SEED >= 0: a reproducible run (fast-reid seeds randomly)
    return cfg


def main(args):
    with user_errors():
        cfg = setup(args)
        if args.eval_only:
            return Trainer.evaluate_weights(cfg)
        trainer = Trainer(cfg)
        trainer.resume_or_load(resume=args.resume)
        return trainer.train()


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    print("Command Line Args:", args, file=sys.stderr)
    with user_errors():
        launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
               dist_url=args.dist_url, args=(args,))
