"""Features -> metrics: ``evaluate`` and CanuReidEvaluator give fast-reid's numbers and dict."""
import logging

import numpy as np
import pytest
import torch

import canu_plugin
import fastreid.utils.compute_dist as compute_dist
from canu_plugin.errors import CanuError
from canu_plugin.evaluation import CanuReidEvaluator, evaluate, query_expansion
from fastreid.config import get_cfg
from fastreid.evaluation.query_expansion import aqe
from fastreid.evaluation.rank import evaluate_rank
from fastreid.evaluation.reid_evaluation import ReidEvaluator
from fastreid.utils.compute_dist import build_dist

NUM_Q, NUM_G, DIM = 40, 220, 16


@pytest.fixture(scope="module")
def data():
    """(features (N, D), pids (N,), camids (N,)): queries first, clustered by pid."""
    rng = np.random.default_rng(0)
    pids, cams = rng.integers(0, 30, NUM_Q + NUM_G), rng.integers(0, 4, NUM_Q + NUM_G)
    pids[0] = 99  # a query without any gallery match: skipped by both
    centres = rng.standard_normal((100, DIM))
    feats = centres[pids] + 0.8 * rng.standard_normal((NUM_Q + NUM_G, DIM))
    return torch.tensor(feats, dtype=torch.float32), pids, cams


def _cfg(**test):
    cfg = canu_plugin.add_canu_config(get_cfg())
    cfg.OUTPUT_DIR = ""  # no PCA plot unless a test passes a folder
    for key, value in test.items():
        node, name = cfg.TEST, key
        if "__" in key:
            sub, name = key.split("__")
            node = getattr(cfg.TEST, sub)
        setattr(node, name, value)
    return cfg


def _run(evaluator, feats, pids, cams, batch=32):
    evaluator.reset()
    for s in range(0, len(feats), batch):
        inputs = {"targets": torch.as_tensor(pids[s:s + batch]), "camids": torch.as_tensor(cams[s:s + batch])}
        evaluator.process(inputs, feats[s:s + batch])
    return evaluator.evaluate()


def _assert_same_dict(ours, ref, tol=1e-9):
    assert list(ours)[:len(ref)] == list(ref)  # fast-reid's keys first, then our camera diagnostics
    for key in ref:
        assert float(ours[key]) == pytest.approx(float(ref[key]), abs=tol), key
        assert type(ours[key]) is type(ref[key]), key


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("spread", [None, 0.8])
def test_evaluate_matches_fastreid(metric, spread):
    """Distances per query block (fast-reid's build_dist semantics), then the exact metrics."""
    rng = np.random.default_rng(4)
    q, g = 70, 400
    pids, cams = rng.integers(0, 40, q + g), rng.integers(0, 5, q + g)
    feats = torch.tensor(rng.standard_normal((q + g, 24)), dtype=torch.float32) if spread is None else torch.tensor(
        rng.standard_normal((40, 24))[pids] + spread * rng.standard_normal((q + g, 24)), dtype=torch.float32)
    res = evaluate(feats[:q], feats[q:].numpy(), pids[:q], pids[q:], cams[:q], cams[q:], metric=metric, chunk=16)
    cmc, ap, inp = evaluate_rank(build_dist(feats[:q], feats[q:], metric), pids[:q], pids[q:], cams[:q], cams[q:],
                                 use_cython=False)
    assert np.abs(res["cmc"] - cmc).max() <= 1e-6 and res["num_valid"] == len(ap)
    np.testing.assert_allclose(res["all_AP"], ap, atol=1e-9)
    np.testing.assert_allclose(res["all_INP"], inp, atol=1e-9)


def test_distances_ignore_a_reduced_matmul_precision(data):
    """A training script may allow TF32 / bf16 products; the evaluation keeps plain float32."""
    feats, pids, cams = data
    args = (feats[:NUM_Q], feats[NUM_Q:], pids[:NUM_Q], pids[NUM_Q:], cams[:NUM_Q], cams[NUM_Q:])
    exact = evaluate(*args)
    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
    try:
        reduced = evaluate(*args)
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision(old)
    assert np.array_equal(exact["all_AP"], reduced["all_AP"]) and np.array_equal(exact["cmc"], reduced["cmc"])


def test_evaluate_rejects_bad_features():
    qf, gf = torch.randn(4, 8), torch.randn(10, 8)
    qp, gp, qc, gc = np.arange(4), np.arange(10) % 4, np.zeros(4), np.ones(10)
    bad = gf.clone()
    bad[3, 2] = float("nan")
    with pytest.raises(CanuError, match="gallery features contain NaN or inf in 1 of 10 rows.*row 3"):
        evaluate(qf, bad, qp, gp, qc, gc)
    big = gf.clone()
    big[3, :2] = 3e38  # finite, though its row's sum overflows: not an error
    assert evaluate(qf, big, qp, gp, qc, gc)["num_query"] == 4
    with pytest.raises(CanuError, match="0 queries.*empty"):
        evaluate(qf[:0], gf, qp[:0], gp, qc[:0], gc)
    with pytest.raises(CanuError, match="pids"):
        evaluate(qf, gf, qp[:3], gp, qc, gc)
    with pytest.raises(CanuError, match="dims"):
        evaluate(qf, torch.randn(10, 7), qp, gp, qc, gc)
    with pytest.raises(CanuError, match="real 2-D"):
        evaluate(qf[:, 0], gf, qp, gp, qc, gc)
    with pytest.raises(CanuError, match="unknown metric"):
        evaluate(qf, gf, qp, gp, qc, gc, metric="hamming")


@pytest.mark.cuda
def test_evaluate_on_cuda(data):
    feats, pids, cams = data
    args = (pids[:NUM_Q], pids[NUM_Q:], cams[:NUM_Q], cams[NUM_Q:])
    cpu = evaluate(feats[:NUM_Q], feats[NUM_Q:], *args, device="cpu")
    gpu = evaluate(feats[:NUM_Q].cuda(), feats[NUM_Q:].cuda(), *args)
    # GPU distances may differ from the CPU's in the last bit (and swap two near-equal neighbours)
    assert gpu["mAP"] == pytest.approx(cpu["mAP"], abs=1e-3) and np.abs(gpu["cmc"] - cpu["cmc"]).max() < 0.03


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("with_aqe", [False, True])
def test_same_dict_as_fastreid(data, metric, with_aqe):
    cfg = _cfg(METRIC=metric, AQE__ENABLED=with_aqe, CANU__QUERY_CHUNK=7)
    ours = _run(CanuReidEvaluator(cfg, NUM_Q), *data)
    _assert_same_dict(ours, _run(ReidEvaluator(cfg, NUM_Q), *data), tol=1e-4 if with_aqe else 1e-9)
    assert set(ours) == {"Rank-1", "Rank-5", "Rank-10", "mAP", "mINP", "metric", "cam_probe", "cam_probe_chance",
                         "d_inter", "cam_nmi", "cam_nmi_ids", "Rank-1_cn", "mAP_cn"}
    assert 0 < ours["mAP"] <= 100 and ours["metric"] == pytest.approx((ours["mAP"] + ours["Rank-1"]) / 2)


def test_sparse_rerank_matches_fastreid_dense_rerank(data, monkeypatch):
    # fast-reid's dense Jaccard insists on CUDA unless asked for its CPU faiss search
    dense = compute_dist.compute_jaccard_distance
    monkeypatch.setattr(compute_dist, "compute_jaccard_distance",
                        lambda feat, k1, k2, search_option=0: dense(feat, k1=k1, k2=k2, search_option=3))
    cfg = _cfg(RERANK__ENABLED=True, RERANK__K1=12, RERANK__K2=4, RERANK__LAMBDA=0.3)
    _assert_same_dict(_run(CanuReidEvaluator(cfg, NUM_Q), *data), _run(ReidEvaluator(cfg, NUM_Q), *data), 1e-4)


def test_query_expansion_matches_fastreid_aqe(data):
    feats = data[0]
    q, g = query_expansion(feats[:NUM_Q], feats[NUM_Q:], qe_times=2, qe_k=4, alpha=3.0, chunk=9)
    ref_q, ref_g = aqe(feats[:NUM_Q], feats[NUM_Q:], 2, 4, 3.0)
    torch.testing.assert_close(q, ref_q, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(g, ref_g, atol=1e-5, rtol=1e-5)
    with pytest.raises(CanuError, match="QE_K"):
        query_expansion(feats[:2], feats[2:5], qe_k=9)


def test_disabled_and_roc_use_fastreid(data, caplog):
    ref = _run(ReidEvaluator(_cfg(), NUM_Q), *data)
    _assert_same_dict(_run(CanuReidEvaluator(_cfg(CANU__ENABLED=False), NUM_Q), *data), ref, tol=0)
    with caplog.at_level(logging.WARNING, logger="canu_plugin.evaluation.evaluator"):
        roc = _run(CanuReidEvaluator(_cfg(ROC__ENABLED=True), NUM_Q), *data)
    assert "TPR@FPR=1e-04" in roc and roc["mAP"] == pytest.approx(ref["mAP"])
    assert "fast-reid's dense evaluator" in caplog.text


def test_gathers_predictions_of_all_ranks(data, monkeypatch):
    """With two ranks the main process evaluates both ranks' predictions (here: two halves)."""
    feats, pids, cams = data
    half = len(feats) // 2
    ref = _run(ReidEvaluator(_cfg(), NUM_Q), feats, pids, cams)
    other = CanuReidEvaluator(_cfg(), NUM_Q)
    _run(other, feats[half:], pids[half:], cams[half:])
    from fastreid.utils import comm
    monkeypatch.setattr(comm, "get_world_size", lambda: 2)
    monkeypatch.setattr(comm, "synchronize", lambda: None)
    monkeypatch.setattr(comm, "gather", lambda preds, dst=0: [preds, other._predictions])
    main = CanuReidEvaluator(_cfg(), NUM_Q)
    _assert_same_dict(_run(main, feats[:half], pids[:half], cams[:half]), ref)
    monkeypatch.setattr(comm, "is_main_process", lambda: False)
    assert _run(CanuReidEvaluator(_cfg(), NUM_Q), feats[:half], pids[:half], cams[:half]) == {}


def test_small_gallery_reports_saturated_ranks():
    feats = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.5, 0.5]])
    res = _run(CanuReidEvaluator(_cfg(), 1), feats, np.array([1, 1, 2, 3]), np.array([0, 1, 0, 0]))
    assert res["Rank-1"] == 100 and res["Rank-5"] == 100 and res["Rank-10"] == 100 and res["mAP"] == 100


def test_bad_input_is_a_clear_error(data):
    feats, pids, cams = data
    evaluator = CanuReidEvaluator(_cfg(), NUM_Q)
    with pytest.raises(CanuError, match="no predictions"):
        evaluator.evaluate()
    with pytest.raises(CanuError, match="0 queries"):
        _run(CanuReidEvaluator(_cfg(), 0), feats, pids, cams)
    with pytest.raises(CanuError, match="none of the 2 queries"):
        _run(CanuReidEvaluator(_cfg(), 2), feats[:6], np.array([50, 51, 1, 1, 2, 2]), cams[:6])
    nan = feats.clone()
    nan[NUM_Q + 3] = float("nan")
    with pytest.raises(CanuError, match="gallery features contain NaN"):
        _run(CanuReidEvaluator(_cfg(), NUM_Q), nan, pids, cams)
    with pytest.raises(CanuError, match=r"K1 \(20\) <= query \+ gallery size \(6\)"):  # re-ranking, tiny set
        _run(CanuReidEvaluator(_cfg(RERANK__ENABLED=True), 2), feats[:6], pids[:6], cams[:6])
    with pytest.raises(CanuError, match="TEST.METRIC"):
        _run(CanuReidEvaluator(_cfg(METRIC="jaccard"), NUM_Q), feats, pids, cams)


def _shifted(data, camera_shift):
    feats, pids, cams = data
    rng = np.random.default_rng(1)
    return feats + camera_shift * torch.tensor(rng.standard_normal((4, DIM)), dtype=torch.float32)[cams], pids, cams


@pytest.mark.parametrize("camera_shift", [0.0, 3.0])
def test_camera_diagnostics_see_a_camera_shift(data, camera_shift, tmp_path):
    """Features with a per-camera offset: the probe reads the camera, d_inter grows and the clusters follow the
    cameras (cam_nmi); without it the probe is near chance. Per-camera normalization removes the offset: mAP_cn
    is the same with and without it. The PCA PNG of cameras 1 and 2 is written."""
    cfg = _cfg()
    cfg.TEST.CANU.PCA_CAMERAS = [0, 1]
    out = _run(CanuReidEvaluator(cfg, NUM_Q, str(tmp_path)), *_shifted(data, camera_shift))
    if camera_shift:
        assert out["cam_probe"] > 90 and out["d_inter"] > 0.3
        assert out["cam_nmi"] > 0.5 and out["mAP"] < out["mAP_cn"] - 10
    else:
        assert out["cam_probe"] < 45 and out["d_inter"] < 0.15  # 4 cameras: chance ~25-30 %
        assert out["cam_nmi"] < 0.2 < out["cam_nmi_ids"]
    assert 20 < out["cam_probe_chance"] < 35
    assert (tmp_path / "pca_cam1_cam2.png").stat().st_size > 1000
    unshifted = _run(CanuReidEvaluator(_cfg(), NUM_Q), *_shifted(data, 0.0))
    assert out["mAP_cn"] == pytest.approx(unshifted["mAP_cn"], abs=1e-4)


def test_test_time_camera_norm_ranks_the_normalised_features(data):
    """TEST.CAMERA_NORM: the metrics of evaluate() on the features normalised per camera over query + gallery;
    the diagnostics still describe the model's own features. fast-reid's dense path cannot do it: refused."""
    from canu_plugin.clustering.camera_norm import camera_normalize
    feats, pids, cams = _shifted(data, 3.0)
    out = _run(CanuReidEvaluator(_cfg(CAMERA_NORM=True), NUM_Q), feats, pids, cams)
    normed = camera_normalize(feats, cams)
    ref = evaluate(normed[:NUM_Q], normed[NUM_Q:], pids[:NUM_Q], pids[NUM_Q:], cams[:NUM_Q], cams[NUM_Q:])
    assert out["mAP"] == pytest.approx(ref["mAP"] * 100, abs=1e-9) and out["mAP_cn"] == pytest.approx(out["mAP"])
    assert out["cam_probe"] > 90  # the model's features, not the normalised ones
    for bad in (dict(CANU__ENABLED=False), dict(ROC__ENABLED=True)):
        with pytest.raises(CanuError, match="TEST.CAMERA_NORM needs canu-plugin's evaluator"):
            _run(CanuReidEvaluator(_cfg(CAMERA_NORM=True, **bad), NUM_Q), feats, pids, cams)


def test_camera_diagnostics_can_be_turned_off(data):
    cfg = _cfg(CANU__CAMERA_DIAGNOSTICS=False)
    assert "cam_probe" not in _run(CanuReidEvaluator(cfg, NUM_Q), *data)
