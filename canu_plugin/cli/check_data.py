"""``canu-check-data`` (= ``tools/check_data.py``): before hours of GPU time, check every dataset a
config names (DATASETS.NAMES, DATASETS.TESTS, PSEUDO.SOURCE_DATASETS) against the official release:
per split, identities, cameras and images (tracklets and frames for video datasets), as the
training and evaluation loaders read them.

    canu-check-data --config-file configs/uda/canu_M2D.yml --root /data/reid
    canu-check-data --config-file configs/video/MARS_ace.yml --warn-only      # report, exit 0

Exit status: 0 when every dataset with official figures matches them (synthetic datasets are
counted, never compared), 1 on a mismatch or an unreadable dataset (0 with ``--warn-only``),
2 for a bad command line or config. ``--root`` (default ``$FASTREID_DATASETS``, else ``datasets``)
is the folder holding the datasets; trailing ``KEY VALUE`` pairs override the config.
"""
import argparse
import os
import sys

import canu_plugin  # noqa: F401  (registers the datasets)
from canu_plugin.data.check import check_dataset, dataset_names, format_check
from canu_plugin.engine import setup_cfg
from canu_plugin.errors import user_errors
from canu_plugin.resources import config_path


def parse_args(argv=None):
    """Command-line options of the check."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, help="the config to check (a path or a shipped configs/... name)")
    p.add_argument("--root", default=None, help="the folder holding the datasets (default: $FASTREID_DATASETS, "
                   "else 'datasets')")
    p.add_argument("--warn-only", action="store_true", help="report mismatches but exit 0")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return p.parse_args(argv)


def check_data(argv=None):
    """Print one table per dataset; returns the exit status (1: a mismatch, unless --warn-only)."""
    a = parse_args(argv)
    # only the dataset keys matter: no GPU or ImageNet weights file needed to check the data
    cfg = setup_cfg(config_path(a.config_file), ["MODEL.DEVICE", "cpu", "MODEL.BACKBONE.PRETRAIN", "False", *a.opts])
    root = os.path.abspath(a.root or os.environ.get("FASTREID_DATASETS", "datasets"))
    print(f"datasets of {a.config_file} under {root}")
    failed = []
    for name in dataset_names(cfg):
        check = check_dataset(name, root)
        print(format_check(check))
        if check.problems:
            failed.append(name)
    if failed:
        tail = " (--warn-only: exit 0)" if a.warn_only else ""
        print(f"{'WARNING' if a.warn_only else 'ERROR'}: {', '.join(failed)}: unreadable or not as released (see "
              f"MISMATCH / ERROR above); fix the data before training{tail}")
        return 0 if a.warn_only else 1
    print("every dataset matches its release (or has no official figures)")
    return 0


def main(argv=None):
    """``canu-check-data``: :func:`check_data`, a CanuError reported in one line; returns the exit code."""
    with user_errors():
        return check_data(argv)


if __name__ == "__main__":
    sys.exit(main())
