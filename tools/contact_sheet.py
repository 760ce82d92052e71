#!/usr/bin/env python
"""A contact sheet of one synthetic identity across its cameras: one row per camera, its images of that
camera side by side (every split; several --pid: one block of columns per identity, e.g. the members
of a look-alike family).

    python tools/contact_sheet.py --root datasets --dataset SynthA --out sheet.png            # busiest id
    python tools/contact_sheet.py --root datasets --dataset SynthB --pid 12 40 --out sheet.png
    python tools/contact_sheet.py --testbed configs/synthetic/testbeds/default.yml --dataset SynthB --out s.png
    python tools/contact_sheet.py --dataset SynthA --set identity_detail=0.6 num_train_ids=12 --out s.png

--testbed (or --set alone) generates the dataset into a temporary root first: SynthA with the testbed's
source arguments, SynthB with its target's, SynthPre0 with its ``pretrain`` arguments; --set KEY=JSON
overrides generator arguments on top (canu_plugin.data.synthetic.generate_domain).
"""
import argparse
import json
import os
import sys
import tempfile

import numpy as np
from PIL import Image, ImageDraw

from canu_plugin.errors import CanuError, user_errors

SPLITS = ("bounding_box_train", "query", "bounding_box_test")


def images_by_camera(domain_dir):
    """{pid: {camera (1-based): [file path, ...]}} of a Market-layout folder (frame order; pid 0 left out)."""
    out = {}
    for split in SPLITS:
        folder = os.path.join(domain_dir, split)
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            if name.endswith(".jpg") and int(name[:4]) > 0:
                out.setdefault(int(name[:4]), {}).setdefault(int(name[6]), []).append(os.path.join(folder, name))
    for cams in out.values():
        for paths in cams.values():
            paths.sort(key=lambda p: int(os.path.basename(p)[10:16]))
    return out


def _meta_args(domain_dir):
    """The generator arguments in ``domain_dir``'s meta.json ({} without one)."""
    path = os.path.join(domain_dir, "meta.json")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f).get("args", {})


def family_of(domain_dir, table, pid):
    """The look-alike family of ``pid`` (identity_detail.lookalike_families in meta.json): sorted pids."""
    import zlib
    from canu_plugin.data.synthetic_detail import families
    args = _meta_args(domain_dir)
    size = args.get("identity_detail", {}).get("lookalike_families", 0)
    if not size:
        return [pid]
    split_of = lambda path: os.path.basename(os.path.dirname(path))
    ids = {s: sorted({p for p in table if any(split_of(q) == s for c in table[p].values() for q in c)})
           for s in ("bounding_box_train", "query")}
    head = families(np.random.default_rng([args["seed"], zlib.crc32(args["name"].encode()), 14]),
                    ids["bounding_box_train"], ids["query"], size)
    return sorted(p for p in head if head[p] == head[pid])


def _camera_labels(domain_dir, cams):
    """Row labels: ``c<cam>``, and the camera's group ``g<k>`` when meta.json has camera_gaps."""
    import zlib
    from canu_plugin.data.synthetic_knobs import camera_groups
    args, labels = _meta_args(domain_dir), {c: f"c{c}" for c in cams}
    if args.get("camera_gaps"):
        rng = np.random.default_rng([args["seed"], zlib.crc32(args["name"].encode()), 12])
        for k, part in enumerate(camera_groups(rng, args["num_cameras"], args["camera_gaps"]["groups"])):
            labels.update({int(c) + 1: f"c{int(c) + 1}\ng{k}" for c in part if int(c) + 1 in labels})
    return labels


def contact_sheet(domain_dir, pids, out_path, per_camera=5, family=False):
    """Save the sheet of ``pids`` (None: the identity seen by the most cameras; ``family``: the look-alike
    family of the first) to ``out_path``; returns the pids drawn. Rows: the cameras any of them visits
    (labelled with their camera_gaps group); columns: up to ``per_camera`` images per pid."""
    table = images_by_camera(domain_dir)
    if not table:
        raise CanuError(f"{domain_dir} holds no person images (expected a Market-1501 layout)")
    pids = pids or [max(sorted(table), key=lambda p: (len(table[p]), sum(map(len, table[p].values()))))]
    missing = [p for p in pids if p not in table]
    if missing:
        raise CanuError(f"pid(s) {missing} not in {domain_dir}; it has {min(table)}..{max(table)}")
    pids = family_of(domain_dir, table, pids[0]) if family else pids
    cams = sorted({c for p in pids for c in table[p]})
    H, W = np.asarray(Image.open(next(iter(table[pids[0]].values()))[0])).shape[:2]
    pad, label, gap, labels = 3, 28, 10, _camera_labels(domain_dir, cams)
    block = per_camera * (W + pad)
    sheet = Image.new("RGB", (label + len(pids) * (block + gap), 16 + len(cams) * (H + pad) + pad), "white")
    pen = ImageDraw.Draw(sheet)
    for b, pid in enumerate(pids):
        pen.text((label + b * (block + gap), 2), f"id {pid}", fill="black")
    for r, cam in enumerate(cams):
        y = 16 + r * (H + pad)
        pen.text((4, y + H // 2 - 6), labels[cam], fill="black")
        for b, pid in enumerate(pids):
            for k, path in enumerate(table[pid].get(cam, [])[:per_camera]):
                sheet.paste(Image.open(path).convert("RGB"), (label + b * (block + gap) + k * (W + pad), y))
    sheet.quantize(256, dither=Image.Dither.NONE).save(out_path, optimize=True)  # small PNGs for the docs
    return pids


def generate(dataset, testbed, sets, root):
    """Generate ``dataset`` under ``root`` from a testbed file (or the defaults) and KEY=JSON overrides."""
    from canu_plugin.bench.pretrain import GENERATOR_KEYS
    from canu_plugin.bench.testbed import PRETRAIN_DEFAULTS, domain_kwargs, load_testbed
    from canu_plugin.data.synthetic import generate_domain
    tb = load_testbed(testbed or {})
    if dataset.startswith("SynthPre"):
        spec = tb["pretrain"] or PRETRAIN_DEFAULTS
        kwargs = dict({k: spec[k] for k in GENERATOR_KEYS}, style="SynthPre", seed=int(spec["seed"]))
    else:
        kwargs = domain_kwargs(tb, {"SynthA": "source", "SynthB": "target"}[dataset])
    for item in sets:
        key, _, value = item.partition("=")
        try:
            kwargs[key] = json.loads(value)
        except ValueError:
            kwargs[key] = value
    return generate_domain(root, dataset, **kwargs)["path"]


def main(argv=None):
    """Command line: see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=os.getenv("FASTREID_DATASETS", "datasets"), help="dataset root (not generated)")
    p.add_argument("--dataset", default="SynthA", help="SynthA, SynthB or SynthPre0 (a folder under the root)")
    p.add_argument("--pid", type=int, nargs="+", default=None, help="identities (default: the busiest one)")
    p.add_argument("--family", action="store_true", help="the look-alike family of the (first) --pid")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--per-camera", type=int, default=5, help="images per camera and identity (default 5)")
    p.add_argument("--testbed", default=None, help="generate the dataset from this testbed file into a temporary root")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=JSON", help="generator arguments on top (generates)")
    args = p.parse_args(argv)
    with user_errors(), tempfile.TemporaryDirectory() as tmp:
        folder = (generate(args.dataset, args.testbed, args.set, tmp) if args.testbed or args.set
                  else os.path.join(args.root, args.dataset))
        pids = contact_sheet(folder, args.pid, args.out, args.per_camera, args.family)
        print(f"{args.out}: {args.dataset} id(s) {' '.join(map(str, pids))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
