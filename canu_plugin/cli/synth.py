"""``canu-synth`` (= ``tools/make_synthetic.py``): generate the built-in synthetic re-ID domains
(Market-1501 layout) for the demo and the tests, and the synthetic tracklet domains (MARS layout)
for video re-ID.

    canu-synth --root datasets                 # SynthA and SynthB, defaults
    canu-synth --root datasets --domains SynthA --num-train-ids 50 --overwrite
    canu-synth --root datasets --sheet sheet.png   # also a contact sheet
    canu-synth --root datasets --domains SynthVidA SynthVidB   # tracklets, MARS layout

A domain already generated with the same arguments is skipped; one generated with different
arguments is an error unless --overwrite is given (which deletes and regenerates it).
"""
import argparse
import os
import sys

import numpy as np
from PIL import Image

from canu_plugin.data.synthetic import DOMAIN_PRESETS, generate_domain
from canu_plugin.data.video.synthetic_video import VIDEO_STYLES, generate_video_domain
from canu_plugin.errors import CanuError, user_errors

# options of both generators; None = the generator's default (image domains: the values in --help)
SHARED = ("num_train_ids", "num_test_ids", "num_cameras", "camera_shift", "id_camera_correlation", "num_distractors",
          "image_size")
IMAGE_ONLY, VIDEO_ONLY = ("images_per_camera", "camera_effects"), ("tracklets_per_camera", "frames_per_tracklet", "num_junk")


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
    p.add_argument("--domains", nargs="+", default=["SynthA", "SynthB"],
                   choices=sorted(DOMAIN_PRESETS) + sorted(VIDEO_STYLES))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-train-ids", type=int, default=None, help="default 100 (tracklets: 60)")
    p.add_argument("--num-test-ids", type=int, default=None, help="default 100 (tracklets: 40)")
    p.add_argument("--num-cameras", type=int, default=None, help="default: the domain's preset (A: 6, B: 5)")
    p.add_argument("--images-per-camera", type=int, nargs=2, default=None, metavar=("LO", "HI"),
                   help="images per (id, camera), drawn uniformly in [LO, HI] (test ids: at least 2); default 2 5")
    p.add_argument("--camera-shift", type=float, default=None, help="strength of camera differences, in [0, 1]; 0.8")
    p.add_argument("--id-camera-correlation", type=float, default=None,
                   help="0: every id in every camera; 1: every id in exactly two cameras; default 0.6")
    p.add_argument("--num-distractors", type=int, default=None, help="pid-0 gallery images (tracklets); 20 (10)")
    p.add_argument("--image-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                   help="default 128 64 (tracklets: 64 32)")
    p.add_argument("--tracklets-per-camera", type=int, nargs=2, default=None, metavar=("LO", "HI"),
                   help="tracklet domains: tracklets per (id, camera) in [LO, HI]; default 1 2")
    p.add_argument("--frames-per-tracklet", type=int, nargs=2, default=None, metavar=("LO", "HI"),
                   help="tracklet domains: frames per tracklet in [LO, HI]; default 6 16")
    p.add_argument("--num-junk", type=int, default=None, help="tracklet domains: pid -1 junk tracklets; default 5")
    p.add_argument("--camera-effects", nargs="+", default=None, metavar="EFFECT=S",
                   help="image domains: camera effects beyond colour, each a strength in [0, 1], e.g. viewpoint=0.5 "
                        "occlusion=0.3 (viewpoint, pose, occlusion, resolution, illumination); default: none")
    p.add_argument("--overwrite", action="store_true", help="regenerate a domain made with other arguments")
    p.add_argument("--sheet", default="", help="also save a contact sheet PNG of the first domain here")
    return p.parse_args(argv)


def _options(a, video):
    """Generator keyword arguments given on the command line (CanuError for the other kind's options)."""
    wrong = [k for k in (IMAGE_ONLY if video else VIDEO_ONLY) if getattr(a, k) is not None]
    if wrong:
        raise CanuError(f"--{wrong[0].replace('_', '-')} applies to {'image' if video else 'tracklet'} domains only")
    keys = SHARED + (VIDEO_ONLY if video else IMAGE_ONLY)
    out = {k: getattr(a, k) for k in keys if getattr(a, k) is not None}
    if "camera_effects" in out:
        out["camera_effects"] = _key_values(out["camera_effects"], "--camera-effects")
    return out


def _key_values(items, option):
    """{key: float} from ``KEY=VALUE`` words (CanuError for another form)."""
    try:
        return {k: float(v) for k, v in (w.split("=", 1) for w in items)}
    except ValueError:
        raise CanuError(f"{option} takes EFFECT=STRENGTH words, e.g. viewpoint=0.5; got {' '.join(items)}") from None


def generate(argv=None):
    """Generate the requested domains; prints one summary line per domain."""
    a = parse_args(argv)
    for name in a.domains:
        if name in VIDEO_STYLES:
            s = generate_video_domain(a.root, name, seed=a.seed, overwrite=a.overwrite, **_options(a, video=True))
            n = s["tracklets"]
            print(f"{name}: {s['num_train_ids']} train ids / {s['num_test_ids']} test ids, {s['num_cameras']} cameras, "
                  f"train {n['train']} / query {n['query']} / gallery {n['gallery']} tracklets "
                  f"({sum(s['frames'].values())} frames, MARS layout) in {s['path']} "
                  + ("(already there, skipped)" if s["skipped"] else f"({s['seconds']:.1f} s)"))
            continue
        s = generate_domain(a.root, name, seed=a.seed, overwrite=a.overwrite, **_options(a, video=False))
        n = s["images"]
        print(f"{name}: {s['num_train_ids']} train ids / {s['num_test_ids']} test ids, {s['num_cameras']} cameras, "
              f"train {n['bounding_box_train']} / query {n['query']} / gallery {n['bounding_box_test']} images "
              f"({s['distractors']} distractors) in {s['path']} "
              + ("(already there, skipped)" if s["skipped"] else f"({s['seconds']:.1f} s)"))
    if a.sheet:
        if a.domains[0] in VIDEO_STYLES:
            raise CanuError("--sheet draws an image domain: put SynthA or SynthB first in --domains")
        print(f"contact sheet: {contact_sheet(os.path.join(a.root, a.domains[0]), a.sheet)}")
    return 0


def main(argv=None):
    """``canu-synth``: :func:`generate`, a CanuError reported in one line; returns the exit code."""
    with user_errors():
        return generate(argv)


if __name__ == "__main__":
    sys.exit(main())
