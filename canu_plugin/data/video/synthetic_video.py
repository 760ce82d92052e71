"""Synthetic tracklet domains (SynthVidA, SynthVidB) written in MARS's exact layout.

``generate_video_domain(root, "SynthVidA")`` writes, with the person generator of
:mod:`canu_plugin.data.synthetic` (identities, per-camera shifts and domain styles as for SynthA /
SynthB)::

    <root>/SynthVidA/bbox_train/<pid>/<pid>C<cam>T<tracklet>F<frame>.jpg
    <root>/SynthVidA/bbox_test/<pid>/...          (0000 = distractors, 00-1 = junk)
    <root>/SynthVidA/info/{train_name.txt, test_name.txt, tracks_train_info.mat,
                           tracks_test_info.mat, query_IDX.mat}   (scipy.io.savemat, MARS's variables)
    <root>/SynthVidA/meta.json

so that the real MARS parser (:class:`canu_plugin.data.video.mars.MARS`) reads it unchanged.

A tracklet is a walk of L frames of one identity in one camera: every frame is rendered from the
same seed (same view, background, lighting, clothes jitter) plus a smooth motion (sideways
drift, growing or shrinking scale, leg swing), a moving occluder in some tracklets and fresh
sensor noise per frame. Per (id, camera) visited, ``tracklets_per_camera`` tracklets; test ids
get at least two per camera: the first is a query (query_IDX), the others gallery, so every query
has a match in another camera. Test distractor tracklets (pid 0: unseen people) and junk
tracklets (pid -1: half-visible bad detections, which the protocol drops) are added. Same
arguments and seed give byte-identical files (the .mat headers carry no time stamp).
"""
import json
import os
import time
import zlib

import numpy as np
from PIL import Image
from scipy.io import savemat

from canu_plugin.data.synthetic import (DOMAIN_PRESETS, MAX_CAMERAS, _pair, _walks, sample_camera,
                                        sample_identity, write_domain)
from canu_plugin.data.synthetic import _existing as _existing_domain
from canu_plugin.data.synthetic_draw import render
from canu_plugin.data.video.mars import FOLDERS, NAME_FILES, QUERY_FILE, TRACK_FILES, frame_name, pid_folder
from canu_plugin.errors import CanuError

VIDEO_STYLES = {"SynthVidA": "SynthA", "SynthVidB": "SynthB"}
FORMAT_VERSION = 1
MAT_HEADER = b"MATLAB 5.0 MAT-file, written by canu_plugin.data.video.synthetic_video"


def _plan(args):
    """Tracklets of a domain: list of dicts (split, pid, cam 0-based, number, length, query), in the
    order of the name lists (split, then pid, camera, tracklet number)."""
    rng = np.random.default_rng([args["seed"], zlib.crc32(args["name"].encode()), 0])
    n_tr, n_te, C = args["num_train_ids"], args["num_test_ids"], args["num_cameras"]
    pids = rng.permutation(np.arange(1, n_tr + n_te + 1))
    (lo, hi), (f_lo, f_hi) = args["tracklets_per_camera"], args["frames_per_tracklet"]
    rows = []
    for split, ids in (("train", sorted(pids[:n_tr])), ("test", sorted(pids[n_tr:]))):
        for pid, cams in zip(ids, _walks(rng, len(ids), C, args["id_camera_correlation"])):
            for cam in cams:
                n = int(rng.integers(lo, hi + 1))
                for k in range(max(n, 2) if split == "test" else n):
                    rows.append(dict(split=split, pid=int(pid), cam=int(cam), query=split == "test" and k == 0))
    for pid, count in ((0, args["num_distractors"]), (-1, args["num_junk"])):
        rows += [dict(split="test", pid=pid, cam=int(rng.integers(C)), query=False) for _ in range(count)]
    rows.sort(key=lambda r: (r["split"] != "train", r["pid"] if r["pid"] >= 0 else 10 ** 6, r["cam"]))
    counters = {}
    for index, row in enumerate(rows):
        key = (row["split"], row["pid"], row["cam"])
        counters[key] = counters.get(key, 0) + 1
        row.update(index=index, number=counters[key], length=int(rng.integers(f_lo, f_hi + 1)))
    return rows


def _walk(rng, length):
    """Per-frame motion of one tracklet: list of ``render`` motion dicts, and an occluder or None."""
    x0, v = rng.uniform(-0.08, 0.08), rng.uniform(0.004, 0.02) * rng.choice([-1, 1])
    growth, phase, speed = rng.uniform(-0.012, 0.012), rng.uniform(0, 2 * np.pi), rng.uniform(0.6, 1.1)
    motion = [{"dx": float(np.clip(x0 + v * t, -0.2, 0.2)), "scale": 1.0 + growth * t,
               "stride": 0.06 * float(np.sin(phase + speed * t))} for t in range(length)]
    occluder = None
    if rng.random() < 0.3:  # a pole / passer-by crossing the box
        occluder = {"width": rng.uniform(0.15, 0.3), "x0": rng.uniform(-0.3, 1.0), "v": rng.uniform(-0.08, 0.08),
                    "colour": rng.uniform(0.05, 0.5, 3) * 255}
    return motion, occluder


def _occlude(img, occluder, t):
    """Paint the occluder's vertical band of frame ``t`` onto ``img`` (H, W, 3) uint8, in place."""
    W = img.shape[1]
    left = int(round((occluder["x0"] + occluder["v"] * t) * W))
    right = left + max(1, int(round(occluder["width"] * W)))
    if right > 0 and left < W:
        img[:, max(left, 0):min(right, W)] = occluder["colour"].astype(np.uint8)


def _render_tracklet(row, idents, cams, args):
    """The L frames of one tracklet: list of (H, W, 3) uint8 arrays."""
    seed, crc, style = args["seed"], zlib.crc32(args["name"].encode()), args["preset"]
    walk_rng = np.random.default_rng([seed, crc, 4, row["index"]])
    ident = idents[row["pid"]] if row["pid"] > 0 else sample_identity(walk_rng, style)
    motion, occluder = _walk(walk_rng, row["length"])
    frames = []
    for t, move in enumerate(motion):
        img = render(ident, cams[row["cam"]], style, np.random.default_rng([seed, crc, 3, row["index"]]),
                     tuple(args["image_size"]), partial=row["pid"] == -1, motion=move)
        if occluder is not None:
            _occlude(img, occluder, t)
        noise = walk_rng.normal(0.0, 3.0, img.shape)
        frames.append(np.clip(img + noise, 0, 255).astype(np.uint8))
    return frames


def _write_mat(path, key, array):
    """savemat with MARS's variable name, then a fixed header text (savemat stamps the time)."""
    savemat(path, {key: np.asarray(array, dtype=np.float64)})
    with open(path, "r+b") as f:
        f.write(MAT_HEADER.ljust(116))


def _write(folder, args):
    """Render every tracklet under ``folder`` and write the name lists and .mat files; returns stats."""
    crc = zlib.crc32(args["name"].encode())
    style = args["preset"]
    id_rng, cam_rng = np.random.default_rng([args["seed"], crc, 1]), np.random.default_rng([args["seed"], crc, 2])
    n_ids = args["num_train_ids"] + args["num_test_ids"]
    idents = {pid: sample_identity(id_rng, style) for pid in range(1, n_ids + 1)}
    cams = [sample_camera(cam_rng, style, args["camera_shift"]) for _ in range(args["num_cameras"])]
    plan = _plan(args)
    names, tracks, query = {"train": [], "test": []}, {"train": [], "test": []}, []
    for row in plan:
        split, pid = row["split"], row["pid"]
        out = os.path.join(folder, FOLDERS[split], pid_folder(pid))
        os.makedirs(out, exist_ok=True)
        start = len(names[split]) + 1
        for t, img in enumerate(_render_tracklet(row, idents, cams, args)):
            name = frame_name(pid, row["cam"] + 1, row["number"], t + 1)
            Image.fromarray(img).save(os.path.join(out, name), quality=92)
            names[split].append(name)
        tracks[split].append([start, len(names[split]), pid, row["cam"] + 1])
        if row["query"]:
            query.append(len(tracks["test"]))
    write_mars_info(os.path.join(folder, "info"), names, tracks, query)
    return _stats(plan, args, names)


def write_mars_info(info, names, tracks, query):
    """MARS's info/ folder: name lists and the tracks / query_IDX .mat files (1-based indices)."""
    os.makedirs(info)
    for split, fname in NAME_FILES.items():
        with open(os.path.join(info, fname), "w") as f:
            f.write("".join(n + "\n" for n in names[split]))
    for split, (fname, key) in TRACK_FILES.items():
        _write_mat(os.path.join(info, fname), key, np.reshape(tracks[split], (-1, 4)))
    _write_mat(os.path.join(info, QUERY_FILE[0]), QUERY_FILE[1], np.reshape(query, (1, -1)))


def _stats(plan, args, names):
    """The stats stored in meta.json (and returned by :func:`generate_video_domain`)."""
    test = [r for r in plan if r["split"] == "test"]
    return {"num_train_ids": args["num_train_ids"], "num_test_ids": args["num_test_ids"],
            "num_cameras": args["num_cameras"], "distractors": args["num_distractors"], "junk": args["num_junk"],
            "tracklets": {"train": sum(r["split"] == "train" for r in plan), "query": sum(r["query"] for r in test),
                          "gallery": sum(not r["query"] and r["pid"] != -1 for r in test)},
            "frames": {FOLDERS[s]: len(n) for s, n in names.items()}}


def _video_args(name, style, seed, **kw):
    """Validated, JSON-normalised generator arguments (meta.json's "args")."""
    style = style or VIDEO_STYLES.get(name, name)
    if style not in DOMAIN_PRESETS:
        raise CanuError(f"unknown synthetic domain style {style!r} for {name!r}: pass style= one of "
                        f"{sorted(DOMAIN_PRESETS)} (or name the domain one of {sorted(VIDEO_STYLES)})")
    C = int(DOMAIN_PRESETS[style]["num_cameras"] if kw["num_cameras"] is None else kw["num_cameras"])
    pairs = {k: _pair(kw[k], k, name) for k in ("tracklets_per_camera", "frames_per_tracklet", "image_size")}
    (t_lo, t_hi), (f_lo, f_hi), (H, W) = pairs.values()
    problems = [f"num_cameras={C} must be in 2..{MAX_CAMERAS} (MARS cameras are 1..6)" * (not 2 <= C <= MAX_CAMERAS),
                "num_train_ids and num_test_ids must be >= 1, together <= 9999"
                * (not (kw["num_train_ids"] >= 1 and kw["num_test_ids"] >= 1
                        and kw["num_train_ids"] + kw["num_test_ids"] <= 9999)),
                "tracklets_per_camera must be (lo, hi) with 1 <= lo <= hi" * (not 1 <= t_lo <= t_hi),
                "frames_per_tracklet must be (lo, hi) with 1 <= lo <= hi <= 999" * (not 1 <= f_lo <= f_hi <= 999),
                "camera_shift and id_camera_correlation must be in [0, 1]"
                * (not (0 <= kw["camera_shift"] <= 1 and 0 <= kw["id_camera_correlation"] <= 1)),
                "num_distractors and num_junk must be >= 0" * (min(kw["num_distractors"], kw["num_junk"]) < 0),
                "image_size must be (H, W) with H >= 16 and W >= 8" * (not (H >= 16 and W >= 8))]
    problems = [p for p in problems if p]
    if problems:
        raise CanuError(f"bad arguments for synthetic video domain {name!r}: " + "; ".join(problems))
    args = dict(kw, **{k: list(v) for k, v in pairs.items()}, name=name, style=style, seed=int(seed), num_cameras=C,
                preset=DOMAIN_PRESETS[style], format_version=FORMAT_VERSION, layout="MARS")
    return json.loads(json.dumps(args))


def _count_frames(dest):
    """Frames per split folder of ``dest`` (dict bbox_train / bbox_test -> int)."""
    return {f: sum(len([n for n in files if n.endswith(".jpg")]) for _, _, files in os.walk(os.path.join(dest, f)))
            for f in FOLDERS.values()}


def _existing(dest, args):
    """Stats of ``dest`` when it holds exactly this generation, None when absent or empty;
    CanuError when it holds something else (the image generator's check, counting frames)."""
    return _existing_domain(dest, args, count=_count_frames, what="frames")


def generate_video_domain(root, name, *, num_train_ids=60, num_test_ids=40, num_cameras=None,
                          tracklets_per_camera=(1, 2), frames_per_tracklet=(6, 16), camera_shift=0.8,
                          id_camera_correlation=0.6, num_distractors=10, num_junk=5, image_size=(64, 32),
                          style=None, seed=0, overwrite=False):
    """Write tracklet domain ``name`` under ``<root>/<name>/`` in MARS layout (skipped if already there).

    ``style`` None takes ``VIDEO_STYLES[name]`` (SynthVidA: SynthA's style, SynthVidB: SynthB's);
    ``num_cameras`` None the style's preset; ``image_size`` is (H, W). Returns stats (ids, cameras,
    tracklets per split, frames per folder, path, seconds, skipped). Raises CanuError for bad
    arguments, or when the folder holds another generation and ``overwrite`` is False.
    """
    t0 = time.time()
    args = _video_args(name, style, seed, num_train_ids=int(num_train_ids), num_test_ids=int(num_test_ids),
                       num_cameras=num_cameras, tracklets_per_camera=tracklets_per_camera,
                       frames_per_tracklet=frames_per_tracklet, camera_shift=float(camera_shift),
                       id_camera_correlation=float(id_camera_correlation), num_distractors=int(num_distractors),
                       num_junk=int(num_junk), image_size=image_size)
    stats, dest, skipped = write_domain(root, name, args, _write, overwrite, existing=_existing, generator=__name__)
    return dict(stats, name=name, path=dest, seconds=round(time.time() - t0, 2), skipped=skipped)


def generate_video_all(root, names=("SynthVidA", "SynthVidB"), seed=0, overwrite=False, **kwargs):
    """:func:`generate_video_domain` for each name (same keyword arguments); returns {name: stats}."""
    return {n: generate_video_domain(root, n, seed=seed, overwrite=overwrite, **kwargs) for n in names}


__all__ = ["VIDEO_STYLES", "generate_video_domain", "generate_video_all", "write_mars_info"]
