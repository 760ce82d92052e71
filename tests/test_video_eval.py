"""Tracklet evaluation: online pooling (any batching, merged shards) and the video evaluator against a
brute-force computation of the MARS protocol (pooled features, same-id same-camera exclusion,
distractors as negatives, CMC R1/5/10/20, mAP)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from canu_plugin.engine import setup_cfg
from canu_plugin.errors import CanuError
from canu_plugin.evaluation.video import TrackletPooler, VideoReidEvaluator
from canu_plugin.modeling.video import TRACKLET_KEY


def _case(seed=0, num_ids=7, D=16):
    """Frame embeddings of query and gallery tracklets: (frames (F, D), owner (F,), scores (F,), pids, cams, Q)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_ids + 1, D))
    q_pids = list(range(1, num_ids + 1))
    q_cams = [int(rng.integers(3)) for _ in q_pids]
    g_pids, g_cams = [], []
    for p, c in zip(q_pids, q_cams):
        g_pids += [p, p, p]
        g_cams += [c, (c + 1) % 3, int(rng.integers(3))]  # one same-camera tracklet (excluded), one other camera
    g_pids += [0, 0, 0]  # distractors
    g_cams += [0, 1, 2]
    pids, cams = np.array(q_pids + g_pids), np.array(q_cams + g_cams)
    lengths = rng.integers(1, 9, len(pids))
    owner = np.repeat(np.arange(len(pids)), lengths)
    frames = centres[pids[owner]] * 0.6 + rng.normal(size=(len(owner), D))
    scores = rng.normal(size=len(owner))
    return (torch.tensor(frames, dtype=torch.float32), torch.tensor(owner), torch.tensor(scores, dtype=torch.float32),
            pids, cams, len(q_pids))


def _pool(frames, owner, scores, n, attention):
    out = []
    for t in range(n):
        f, s = frames[owner == t].double(), scores[owner == t].double()
        w = torch.softmax(s, 0) if attention else torch.full_like(s, 1 / len(s))
        out.append((w[:, None] * f).sum(0))
    return torch.stack(out).float()


def _brute(feats, pids, cams, nq):
    """Market / MARS protocol with a stable sort, written out."""
    qf, gf = F.normalize(feats[:nq], dim=1).double(), F.normalize(feats[nq:], dim=1).double()
    dist = (1 - qf @ gf.T).numpy()
    gp, gc = pids[nq:], cams[nq:]
    cmc, aps = np.zeros(len(gp)), []
    for i in range(nq):
        keep = ~((gp == pids[i]) & (gc == cams[i]))
        hits = (gp[keep][np.argsort(dist[i][keep], kind="stable")] == pids[i])
        if not hits.any():
            continue
        cmc[np.argmax(hits):] += 1
        ranks = np.flatnonzero(hits)
        aps.append(np.mean((np.arange(len(ranks)) + 1) / (ranks + 1)))
    cmc /= len(aps)
    return {"mAP": 100 * np.mean(aps), **{f"Rank-{r}": 100 * cmc[min(r, len(cmc)) - 1] for r in (1, 5, 10, 20)}}


@pytest.mark.parametrize("attention", [False, True])
def test_pooler_is_exact_for_any_batching_and_merge(attention):
    frames, owner, scores, pids, _, _ = _case(1)
    n = len(pids)
    ref = _pool(frames, owner, scores, n, attention)
    perm = torch.randperm(len(owner), generator=torch.Generator().manual_seed(0))
    a, b = TrackletPooler(n), TrackletPooler(n)
    for k, chunk in enumerate(perm.split(5)):  # two "ranks", frames in random order and batches
        (a if k % 2 else b).add(owner[chunk], frames[chunk], scores[chunk] if attention else None)
    assert torch.allclose(a.merge(b).features(), ref, atol=1e-5)
    partial = TrackletPooler(n)
    partial.add(owner[:3], frames[:3])
    with pytest.raises(CanuError, match="got no frame"):
        partial.features()


@pytest.mark.parametrize("pooling", ["avg", "attention"])
def test_video_evaluator_matches_brute_force(pooling, tmp_path):
    frames, owner, scores, pids, cams, nq = _case(2)
    cfg = setup_cfg("", ["TEST.CANU.CAMERA_DIAGNOSTICS", "False", "TEST.CANU.QUERY_CHUNK", "3",
                         "TEST.CANU.DEVICE", "cpu", "MODEL.DEVICE", "cpu", "OUTPUT_DIR", str(tmp_path)])
    ev = VideoReidEvaluator(cfg, nq, len(pids), pooling, str(tmp_path))
    outputs = torch.cat([frames, scores[:, None]], 1) if pooling == "attention" else frames
    for chunk in torch.arange(len(owner)).split(7):  # loader order: tracklet after tracklet, cut anywhere
        ev.process({TRACKLET_KEY: owner[chunk], "targets": torch.tensor(pids)[owner[chunk]],
                    "camids": torch.tensor(cams)[owner[chunk]]}, outputs[chunk])
    res = ev.evaluate()
    expected = _brute(_pool(frames, owner, scores, len(pids), pooling == "attention"), pids, cams, nq)
    assert list(res)[:4] == ["Rank-1", "Rank-5", "Rank-10", "Rank-20"]
    for k, v in expected.items():
        assert res[k] == pytest.approx(v, abs=1e-4), k  # percent; the CMC is float32
    assert 0 < res["mAP"] < 100 and res["Rank-1"] < 100  # a non-trivial case
    ev.reset()
    with pytest.raises(CanuError, match="tracklet index"):
        ev.process({"targets": torch.zeros(2), "camids": torch.zeros(2)}, frames[:2])
