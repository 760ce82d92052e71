"""TEST.VIDEO_PROTOCOL: MARS's official evaluation (every non-junk test tracklet, queries too, in the
gallery; junk and the query's id in its own camera ignored; distractors negatives) against
torchreid's (the gallery without the queries), on a hand-made case and on a generated MARS-layout
split checked against a brute-force reading of its .mat files."""
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.io import loadmat

from canu_plugin.data.video import queries_in_gallery
from canu_plugin.engine import setup_cfg
from canu_plugin.engine.video import build_video_evaluator, build_video_test_loader
from canu_plugin.errors import CanuError
from canu_plugin.evaluation.evaluator import feature_blocks, rerank_blocks
from canu_plugin.evaluation.video import VideoReidEvaluator
from canu_plugin.modeling.video import TRACKLET_KEY


def _cfg(tmp_path, protocol, *extra):
    return setup_cfg("", ["TEST.VIDEO_PROTOCOL", protocol, "DATALOADER.NUM_WORKERS", "0",
                          "TEST.CANU.CAMERA_DIAGNOSTICS", "False",
                          "TEST.CANU.DEVICE", "cpu", "MODEL.DEVICE", "cpu", "OUTPUT_DIR", str(tmp_path), *extra])


def _run(ev, feats, pids, cams):
    """Feed one frame per tracklet (its feature) in two batches; return the results."""
    for rows in torch.arange(len(pids)).split(max(len(pids) // 2, 1)):
        ev.process({TRACKLET_KEY: rows, "targets": torch.as_tensor(pids)[rows],
                    "camids": torch.as_tensor(cams)[rows]}, feats[rows])
    return ev.evaluate()


def test_queries_in_gallery_follows_each_release():
    assert queries_in_gallery("MARS", "official") and queries_in_gallery("SynthVidB", "official")
    assert not queries_in_gallery("MARS", "torchreid") and not queries_in_gallery("SynthVidB", "torchreid")
    assert not queries_in_gallery("DukeMTMCVideoReID", "official")  # query/ and gallery/ folders, as released
    assert not queries_in_gallery("DukeMTMCSITracklet", "official")
    with pytest.raises(CanuError, match="VIDEO_PROTOCOL"):
        queries_in_gallery("MARS", "mars")


@pytest.mark.parametrize("protocol, with_q, m_ap, gallery", [("official", True, (0.5 + 1.6 / 3) / 2, 6),
                                                            ("torchreid", False, (1 / 3 + 0.5) / 2, 4)])
def test_hand_made_case(tmp_path, protocol, with_q, m_ap, gallery):
    """1-D features, squared euclidean distances; the APs worked out by hand in the comments below."""
    # queries q0 (id 1, cam 0, x 0), q1 (id 1, cam 1, x 1.6); gallery g0 (id 1, cam 0, x 1): q0's same-camera
    # match, q1's good one; g1 distractor (id 0) x 2; g2 (id 1, cam 2) x 3; g3 (id 2) x 0.5; g4 junk (id -1) x 0.1.
    # q0 official: g4 junk, g3 -, g0 junk, q1 +, g1 -, g2 +  -> AP (1/2 + 2/4) / 2 = 0.5
    # q0 torchreid:          g3 -, g0 junk,       g1 -, g2 +  -> AP 1/3
    # q1 official: g1 -, g0 +, g3 -, g2 +, g4 junk, q0 +     -> AP (1/2 + 2/4 + 3/5) / 3
    # q1 torchreid: g1 -, g0 +, g3 -, g2 +                    -> AP 0.5
    x = torch.tensor([[0.0], [1.6], [1.0], [2.0], [3.0], [0.5], [0.1]])
    pids, cams = [1, 1, 1, 0, 1, 2, -1], [0, 1, 0, 1, 2, 1, 1]
    cfg = _cfg(tmp_path, protocol, "TEST.METRIC", "euclidean")
    res = _run(VideoReidEvaluator(cfg, 2, len(pids), "avg", str(tmp_path), query_in_gallery=with_q), x, pids, cams)
    assert res["mAP"] == pytest.approx(100 * m_ap, abs=1e-4)
    assert res["Rank-1"] == 0 and res["Rank-5"] == 100
    assert res[f"gallery_{protocol}"] == gallery  # official: 4 non-junk gallery tracklets + the 2 queries
    # MARS-evaluation's trapezoid AP: at each positive, the mean of the precision before and at it
    # q0: ((0/1 + 1/2) / 2 + (1/3 + 2/4) / 2) / 2; q1: ((0 + 1/2) / 2 + (1/3 + 2/4) / 2 + (2/4 + 3/5) / 2) / 3
    trap = ((0.25 + 5 / 12) / 2 + (0.25 + 5 / 12 + 0.55) / 3) / 2
    assert (res.get("mAP_trapezoid") == pytest.approx(100 * trap, abs=1e-4)) if with_q else "mAP_trapezoid" not in res


def _matlab_ap(good, junk):
    """MARS-evaluation's compute_AP loop (trapezoid rule) over a ranked list's good / junk flags."""
    ap, old_recall, old_precision, hits, seen = 0.0, 0.0, 1.0, 0, 0
    for is_good, is_junk in zip(good, junk):
        if is_junk:
            continue
        hits += bool(is_good)
        recall, precision = hits / good.sum(), hits / (seen + 1)
        ap += (recall - old_recall) * (old_precision + precision) / 2
        old_recall, old_precision, seen = recall, precision, seen + 1
        if hits == good.sum():
            break
    return ap


def _brute(feats, lab, cam, query_rows, gallery_rows):
    """MARS-evaluation's loop (evaluation_mars.m): good = same id, other camera; junk = id -1 or same
    id and camera; the rest (distractors included) negatives. (fast-reid's mAP, R1, MATLAB's mAP), in %."""
    f = F.normalize(torch.as_tensor(feats, dtype=torch.float64), dim=1)
    aps, r1, traps = [], [], []
    for i in query_rows:
        g = np.asarray(gallery_rows)
        dist = (1 - f[g] @ f[i]).numpy()
        junk = (lab[g] == -1) | ((lab[g] == lab[i]) & (cam[g] == cam[i]))
        order = np.argsort(dist, kind="stable")
        all_good = ((lab[g] == lab[i]) & (cam[g] != cam[i]))[order]
        good = all_good[~junk[order]]
        if good.any():
            ranks = np.flatnonzero(good)
            aps.append(np.mean((np.arange(len(ranks)) + 1) / (ranks + 1)))
            r1.append(ranks[0] == 0)
            traps.append(_matlab_ap(all_good, junk[order]))
    return 100 * np.mean(aps), 100 * np.mean(r1), 100 * np.mean(traps)


@pytest.mark.parametrize("protocol", ["official", "torchreid"])
def test_generated_mars_split(video_root, tmp_path, protocol):
    """Gallery size and metrics on SynthVidB (MARS layout) against its .mat files read directly."""
    info = os.path.join(video_root, "SynthVidB", "info")
    tracks = loadmat(os.path.join(info, "tracks_test_info.mat"))["track_test_info"].astype(int)
    query_rows = loadmat(os.path.join(info, "query_IDX.mat"))["query_IDX"].astype(int).ravel() - 1
    names = open(os.path.join(info, "test_name.txt")).read().split()
    lab, cam = tracks[:, 2], tracks[:, 3]
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(lab.max() + 1, 8))
    feats = np.where(lab[:, None] > 0, centres[np.maximum(lab, 0)], 0) + rng.normal(scale=0.8, size=(len(lab), 8))
    cfg = _cfg(tmp_path, protocol)
    loader, num_query = build_video_test_loader(cfg, "SynthVidB", video_root)
    ev = build_video_evaluator(cfg, loader, num_query, str(tmp_path), "SynthVidB")
    row_of = {names[start - 1]: r for r, start in enumerate(tracks[:, 0])}
    rows = [row_of[os.path.basename(paths[0])] for paths, _, _ in loader.dataset.items]  # query then gallery
    assert sorted(rows[:num_query]) == sorted(query_rows)
    res = _run(ev, torch.tensor(feats[rows], dtype=torch.float32), lab[rows], cam[rows] - 1)
    num_junk = int((lab == -1).sum())
    assert num_junk > 0 and (lab == 0).any()  # the split has junk and distractors
    official = len(lab) - num_junk  # every test tracklet but the junk, queries included
    expected_gallery = official if protocol == "official" else official - len(query_rows)
    assert res[f"gallery_{protocol}"] == expected_gallery
    gallery_rows = [r for r in range(len(lab)) if protocol == "official" or r not in set(query_rows)]
    m_ap, r1, trap = _brute(feats, lab, cam, query_rows, gallery_rows)
    assert res["mAP"] == pytest.approx(m_ap, abs=1e-3) and res["Rank-1"] == pytest.approx(r1, abs=1e-3)
    if protocol == "official":
        assert res["mAP_trapezoid"] == pytest.approx(trap, abs=1e-3) and abs(trap - m_ap) > 1e-2


def test_rerank_with_queries_in_gallery_keeps_the_gallery_columns():
    """Re-ranking under the official protocol: the first G columns are the plain gallery's, the last Q
    the queries' (their Jaccard from the same joint k-NN graph)."""
    g = torch.randn(12, 6, generator=torch.Generator().manual_seed(0))
    q = torch.randn(4, 6, generator=torch.Generator().manual_seed(1))
    plain = rerank_blocks(q, g, feature_blocks(q, g), 5, 3, 0.3)(0, 4)
    both = rerank_blocks(q, g, feature_blocks(q, torch.cat([g, q])), 5, 3, 0.3, query_in_gallery=True)(0, 4)
    assert both.shape == (4, 16) and torch.allclose(both[:, :12], plain)
    assert torch.allclose(both.diagonal(offset=12), torch.zeros(4), atol=1e-5)  # each query's own copy: distance 0
