"""``canu-synth`` (= ``tools/make_synthetic.py``): generate the built-in synthetic re-ID domains
(Market-1501 layout) for the demo and the tests.

    canu-synth --root datasets                 # SynthA and SynthB, defaults
    canu-synth --root datasets --domains SynthA --num-train-ids 50 --overwrite
    canu-synth --root datasets --sheet sheet.png   # also a contact sheet

A domain already generated with the same arguments is skipped; one generated with different
arguments is an error unless --overwrite is given (which deletes and regenerates it).
"""
import argparse
import os
import sys

import numpy as np
from PIL import Image

from canu_plugin.data.synthetic import DOMAIN_PRESETS, generate_domain
from canu_plugin.errors import user_errors


def contact_sheet(domain_dir, out_path, num_ids=6, split="bounding_box_train"):
    """Save a PNG grid, one row per id (the ``num_ids`` ids seen by most cameras) and one column per
    camera (first image of that id in that camera; dark grey where the id never appears there)."""
    by_key = {}
    for f in sorted(os.listdir(os.path.join(domain_dir, split))):
        pid, cam = int(f[:4]), int(f[6])
        by_key.setdefault((pid, cam), f)
    cams = sorted({c for _, c in by_key})
    pids = sorted({p for p, _ in by_key if p > 0}, key=lambda p: (-sum((p, c) in by_key for c in cams), p))[:num_ids]
    first = np.asarray(Image.open(os.path.join(domain_dir, split, next(iter(by_key.values())))))
    H, W, pad = first.shape[0], first.shape[1], 4
    sheet = np.full((len(pids) * (H + pad) + pad, len(cams) * (W + pad) + pad, 3), 255, np.uint8)
    for i, pid in enumerate(pids):
        for j, cam in enumerate(cams):
            y, x = pad + i * (H + pad), pad + j * (W + pad)
            f = by_key.get((pid, cam))
            sheet[y:y + H, x:x + W] = np.asarray(Image.open(os.path.join(domain_dir, split, f))) if f else 60
    Image.fromarray(sheet).save(out_path)
    return out_path


def parse_args(argv=None):
    """Command-line options (every generator argument; None keeps the preset / default)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=os.getenv("FASTREID_DATASETS", "datasets"),
                   help="dataset root (default: $FASTREID_DATASETS or ./datasets)")
    p.add_argument("--domains", nargs="+", default=["SynthA", "SynthB"], choices=sorted(DOMAIN_PRESETS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-train-ids", type=int, default=100)
    p.add_argument("--num-test-ids", type=int, default=100)
    p.add_argument("--num-cameras", type=int, default=None, help="default: the domain's preset (A: 6, B: 5)")
    p.add_argument("--images-per-camera", type=int, nargs=2, default=[2, 5], metavar=("LO", "HI"),
                   help="images per (id, camera), drawn uniformly in [LO, HI] (test ids: at least 2)")
    p.add_argument("--camera-shift", type=float, default=0.8, help="strength of camera differences, in [0, 1]")
    p.add_argument("--id-camera-correlation", type=float, default=0.6,
                   help="0: every id in every camera; 1: every id in exactly two cameras")
    p.add_argument("--num-distractors", type=int, default=20, help="pid-0 gallery images")
    p.add_argument("--image-size", type=int, nargs=2, default=[128, 64], metavar=("H", "W"))
    p.add_argument("--overwrite", action="store_true", help="regenerate a domain made with other arguments")
    p.add_argument("--sheet", default="", help="also save a contact sheet PNG of the first domain here")
    return p.parse_args(argv)


def generate(argv=None):
    """Generate the requested domains; prints one summary line per domain."""
    a = parse_args(argv)
    for name in a.domains:
        s = generate_domain(a.root, name, num_train_ids=a.num_train_ids, num_test_ids=a.num_test_ids,
                            num_cameras=a.num_cameras, images_per_camera=a.images_per_camera,
                            camera_shift=a.camera_shift, id_camera_correlation=a.id_camera_correlation,
                            num_distractors=a.num_distractors, image_size=a.image_size, seed=a.seed,
                            overwrite=a.overwrite)
        n = s["images"]
        print(f"{name}: {s['num_train_ids']} train ids / {s['num_test_ids']} test ids, {s['num_cameras']} cameras, "
              f"train {n['bounding_box_train']} / query {n['query']} / gallery {n['bounding_box_test']} images "
              f"({s['distractors']} distractors) in {s['path']} "
              + ("(already there, skipped)" if s["skipped"] else f"({s['seconds']:.1f} s)"))
    if a.sheet:
        print(f"contact sheet: {contact_sheet(os.path.join(a.root, a.domains[0]), a.sheet)}")
    return 0


def main(argv=None):
    """``canu-synth``: :func:`generate`, a CanuError reported in one line; returns the exit code."""
    with user_errors():
        return generate(argv)


if __name__ == "__main__":
    sys.exit(main())
