""""auto"'s measured choice among the exact k-NN backends (knn_calibrate): both outcomes from
injected timings, the margin that keeps the default, the cache, the size below which nothing is
measured, and the same lists whichever backend wins."""
import argparse
import logging

import numpy as np
import pytest

from canu_plugin.clustering import knn, knn_calibrate
from canu_plugin.clustering.synth import clustered_features

FAISS, T32, T16 = ("faiss-cpu", "fp32"), ("torch", "fp32"), ("torch", "bf16")


@pytest.fixture
def fresh(monkeypatch):
    """Empty cache, CPU only, calibration at any size; returns a list of the measure calls."""
    calls = []
    monkeypatch.setattr(knn_calibrate, "_CACHE", {})
    monkeypatch.setattr(knn_calibrate, "MIN_GFLOP", 0.0)
    monkeypatch.setattr(knn, "_torch_has_cuda", lambda: False)
    monkeypatch.setattr(knn, "_faiss_gpus", lambda faiss: 0)
    return calls


def _inject(monkeypatch, calls, timings):
    def fake(candidates, x, k, device=None, predicted=None):
        calls.append(list(candidates))
        return {c: timings[c] for c in candidates}
    monkeypatch.setattr(knn_calibrate, "measure", fake)


def test_choose_keeps_the_default_within_the_margin():
    assert knn_calibrate.choose({FAISS: 1.0, T32: 0.95, T16: 0.93}, FAISS)[0] == FAISS
    pick, why = knn_calibrate.choose({FAISS: 1.0, T32: 0.5, T16: 0.2}, FAISS)
    assert pick == T16 and "torch/bf16 0.2 s" in why and "5.0x the default" in why
    assert knn_calibrate.choose({FAISS: 0.1, T32: 0.5, T16: 0.3}, FAISS)[0] == FAISS


def test_prediction_scales_each_part_to_the_real_search():
    """At the sample's size the re-scoring (per query) and set-up (per row) hide bf16's faster
    products; scaled to N = 32k queries x rows, they no longer do."""
    sample, target = (128, 4096), (32000, 32000)
    fp32 = {"pairs": 0.030, "queries": 0.010, "rows": 0.002}
    bf16 = {"pairs": 0.012, "queries": 0.012, "rows": 0.020}
    assert sum(bf16.values()) > sum(fp32.values())
    p32, p16 = (knn_calibrate.predict(p, sample, target) for p in (fp32, bf16))
    assert p32 == pytest.approx(0.030 * 250 * 7.8125 + 0.010 * 250 + 0.002 * 7.8125)
    assert p16 < 0.5 * p32
    assert knn_calibrate.predict(0.5, sample, (256, 4096)) == pytest.approx(1.0)


def test_candidates_follow_backend_and_precision():
    assert knn._candidates("auto", "auto", object(), 0, False) == [FAISS, T32, T16]
    assert knn._candidates("auto", "fp16", object(), 0, False) == [FAISS, ("torch", "fp16")]
    assert knn._candidates("auto", "auto", None, 0, False) == [T32, T16]
    assert knn._candidates("torch", "auto", object(), 0, True) == [T32, T16, ("torch", "fp16")]
    assert knn._candidates("auto", "auto", object(), 1, True)[0] == ("faiss-gpu", "fp32")
    assert knn._candidates("faiss-cpu", "auto", object(), 0, False) == [FAISS]


@pytest.mark.parametrize("timings,expected", [({FAISS: 0.05, T32: 0.2, T16: 0.1}, FAISS),
                                              ({FAISS: 0.5, T32: 0.2, T16: 0.1}, T16),
                                              ({FAISS: 0.5, T32: 0.1, T16: 0.3}, T32)])
def test_auto_takes_the_measured_fastest_once_per_process(fresh, monkeypatch, caplog, timings, expected):
    _inject(monkeypatch, fresh, timings)
    x = clustered_features(300, 64, seed=1)[0]
    with caplog.at_level(logging.INFO, logger=knn_calibrate.__name__):
        assert knn.resolve_knn("auto", "auto", x, 10) == expected
        assert knn.resolve_knn("auto", "auto", x, 10) == expected
    assert fresh == [[FAISS, T32, T16]]  # measured once, cached
    assert f"'auto' -> {knn_calibrate.label(expected)} (measured on this machine" in caplog.text


def test_small_searches_are_not_measured(fresh, monkeypatch):
    _inject(monkeypatch, fresh, {FAISS: 9.0, T32: 0.1, T16: 0.1})
    monkeypatch.setattr(knn_calibrate, "MIN_GFLOP", 20.0)
    x = clustered_features(300, 64, seed=1)[0]
    assert knn.resolve_knn("auto", "auto", x, 10) == FAISS
    assert knn.resolve_knn("torch", "auto", x, 10) == T32
    assert fresh == []


def test_whichever_wins_the_lists_are_the_same(fresh, monkeypatch):
    x = np.concatenate([clustered_features(700, 96, seed=2)[0], clustered_features(10, 96, seed=3)[0][:1].repeat(3, 0)])
    ref_s, ref_i = knn.knn_search(x, 15, backend="torch", precision="fp32")
    for timings in ({FAISS: 0.1, T32: 0.5, T16: 0.5}, {FAISS: 0.5, T32: 0.5, T16: 0.1}):
        monkeypatch.setattr(knn_calibrate, "_CACHE", {})
        _inject(monkeypatch, fresh, timings)
        sims, idx = knn.knn_search(x, 15)
        np.testing.assert_allclose(sims, ref_s, atol=2e-6)
        same = (idx == ref_i).all(1)
        # faiss may order exact ties (the three duplicates) its own way; every other row is identical
        assert same.sum() >= len(x) - 3
        if timings[T16] < timings[FAISS]:
            np.testing.assert_array_equal(idx, ref_i)
            np.testing.assert_array_equal(sims, ref_s)


def test_real_measurement_times_every_candidate():
    x = clustered_features(400, 32, seed=4)[0]
    t = knn_calibrate.measure([FAISS, T32, T16], x, 5, rounds=1)
    assert set(t) == {FAISS, T32, T16} and all(0 < sum(v.values()) < 10 for v in t.values())
    assert set(t[T16]) == {"pairs", "queries", "rows"} and min(t[T16].values()) >= 0 and set(t[FAISS]) == {"pairs"}


def test_a_small_search_stops_the_calibration_after_one_timed_round(monkeypatch):
    """Rounds stop once they took SHARE of the fastest candidate's predicted search."""
    x = clustered_features(400, 32, seed=4)[0]
    rounds = []
    real = knn_calibrate._search
    monkeypatch.setattr(knn_calibrate, "_search", lambda c, *a: rounds.append(c) or real(c, *a))
    knn_calibrate.measure([T32, T16], x, 5, rounds=3, budget_s=60.0, predicted=lambda parts: 1e-6)
    assert len(rounds) == 4  # the warm-up and one timed round of each candidate
    rounds.clear()
    knn_calibrate.measure([T32, T16], x, 5, rounds=3, budget_s=60.0, predicted=lambda parts: 1e6)
    assert len(rounds) >= 6  # a long search: further rounds (a 3x slower candidate may drop out)


def test_benchmark_prints_every_backend_next_to_the_gemm_rates(capsys):
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import benchmark_knn
    assert benchmark_knn.main(["--n", "400", "--dim", "32", "--k", "7", "--gemm-size", "256"]) == 0
    out = capsys.readouterr().out
    assert "| torch fp32 |" in out and "| torch bf16 |" in out
    for row in ("| torch/fp32 |", "| faiss-cpu |", "| torch/bf16 |", "| auto -> "):
        assert row in out
    assert "auto / fastest:" in out and "speed-up over fp32" in out and "raw bf16 GEMM time" in out
    # a torch backend's time over its precision's raw GEMM time for the search's 2 N^2 D
    assert benchmark_knn._gemm_ratio("torch/bf16", {"s": 3.0, "gflop": 1000.0}, {"bf16": 500.0}) == "1.50x"
    assert benchmark_knn._gemm_ratio("faiss-cpu", {"s": 3.0, "gflop": 1000.0}, {"bf16": 500.0}) == "-"


def test_benchmark_scale_evaluator_table():
    """The growth table's evaluator rows: our time over the fastest raw product of the same run."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import benchmark_scale
    res = {"machine": {}, "gemm_gflops": {"fp32": 1.0},
           "300x2000": {"ours": {"time_s": 3.0, "dist_s": 2.0, "peak_gib": 1.25},
                        "product_s": {"torch": 4.0, "numpy": 2.0}},
           "10x20": {"ours": {"skipped": "failed"}, "product_s": {}}}
    rows = benchmark_scale.eval_table(res).splitlines()
    assert len(rows) == 3 and rows[2] == "| 300x2000 | 3.00 | 2.00 | 2.00 (numpy) | 1.50 | 1.25 |"
    assert benchmark_scale.evaluator_sizes(argparse.Namespace(eval_sizes=[]), "/nonexistent") == {}


def test_reranking_and_jaccard_go_through_the_same_choice(fresh, monkeypatch):
    import torch
    from canu_plugin.clustering.jaccard import jaccard_distance
    from canu_plugin.evaluation.evaluator import rerank_blocks
    _inject(monkeypatch, fresh, {FAISS: 0.5, T32: 0.5, T16: 0.1})
    x = clustered_features(300, 48, seed=8)[0]
    ref = jaccard_distance(x, 10, 4, backend="faiss-cpu")
    assert fresh == []
    np.testing.assert_allclose(jaccard_distance(x, 10, 4).toarray(), ref.toarray(), atol=1e-6)
    assert fresh == [[FAISS, T32, T16]]
    knn_calibrate._CACHE.clear()
    t = torch.from_numpy(x)
    block = rerank_blocks(t[:100], t[100:], lambda a, b: torch.zeros(b - a, 200), 10, 4, 0.3)
    assert block(0, 5).shape == (5, 200) and len(fresh) == 2


def test_a_candidate_that_fails_is_not_chosen(monkeypatch):
    real = knn_calibrate._search

    def flaky(cand, x, k, device):
        if cand == T16:
            raise RuntimeError("bf16 matmul not supported here")
        return real(cand, x, k, device)
    monkeypatch.setattr(knn_calibrate, "_search", flaky)
    t = knn_calibrate.measure([FAISS, T32, T16], clustered_features(300, 32, seed=4)[0], 5, rounds=1)
    assert t[T16] == {"pairs": float("inf")} and sum(t[T32].values()) < float("inf")
    assert knn_calibrate.choose({c: sum(p.values()) for c, p in t.items()}, FAISS)[0] != T16


def test_the_search_logs_its_predicted_time_beside_the_measured_one(fresh, monkeypatch, caplog):
    _inject(monkeypatch, fresh, {FAISS: 0.5, T32: 0.5, T16: 0.01})
    x = clustered_features(400, 64, seed=1)[0]
    info = {}
    assert knn.resolve_knn("auto", "auto", x, 10, info=info) == T16
    shape = (knn_calibrate.QUERIES, 400)  # the sample: 128 queries against all 400 rows
    assert info["predicted_s"] == pytest.approx(knn_calibrate.predict(0.01, shape, (400, 400)))
    with caplog.at_level(logging.INFO, logger=knn.__name__):
        knn.knn_search(x, 10)
    assert f"k-NN on torch/bf16: predicted {info['predicted_s']:.2f} s, measured " in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=knn.__name__):
        knn.knn_search(x, 10, backend="torch", precision="fp32")  # chosen, not measured: nothing to compare
    assert "predicted" not in caplog.text
