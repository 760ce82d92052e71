"""The evaluator's distance blocks: fast-reid's ``build_dist`` values from either float32 product,
in reused buffers, and ``auto``'s measured choice of the product."""
import time

import numpy as np
import pytest
import torch

from canu_plugin.errors import CanuError
from canu_plugin.evaluation import distances, evaluate
from canu_plugin.evaluation.ranking import _flagged, _row_col
from fastreid.utils.compute_dist import build_dist


@pytest.fixture(scope="module")
def feats():
    rng = np.random.default_rng(3)
    return (torch.tensor(rng.standard_normal((37, 24)), dtype=torch.float32),
            torch.tensor(rng.standard_normal((150, 24)), dtype=torch.float32))


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_torch_blocks_are_fastreid_values_across_buffers(feats, metric, monkeypatch):
    """Blocks inside one buffer, across its end, larger than it and out of order: fast-reid's values
    (to float32 rounding: a BLAS may round a row differently in products of different heights)."""
    q, g = feats
    monkeypatch.setattr(distances, "PRODUCT_BYTES", 4 * len(g) * 10)  # a buffer of 10 query rows
    ref = build_dist(q, g, metric)
    blocks = distances.FeatureBlocks(q, g, metric, product="torch")
    assert blocks.rows == 10
    for start, stop in [(0, 4), (4, 10), (10, 13), (13, 37), (2, 5), (30, 37)]:
        np.testing.assert_allclose(blocks(start, stop).numpy(), ref[start:stop], rtol=0, atol=1e-5)
    monkeypatch.setattr(distances, "PRODUCT_BYTES", 1 << 20)  # all queries in one product, as fast-reid's
    np.testing.assert_array_equal(distances.FeatureBlocks(q, g, metric, product="torch")(0, len(q)).numpy(), ref)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_numpy_product_agrees_with_fastreid_to_float32_rounding(feats, metric, monkeypatch):
    q, g = feats
    monkeypatch.setattr(distances, "PRODUCT_BYTES", 4 * len(g) * 16)
    blocks = distances.FeatureBlocks(q, g, metric, product="numpy")
    got = np.concatenate([blocks(s, min(s + 7, len(q))).numpy().copy() for s in range(0, len(q), 7)])
    np.testing.assert_allclose(got, build_dist(q, g, metric), rtol=0, atol=1e-5)


@pytest.mark.parametrize("slow", ["torch", "numpy"])
def test_auto_times_the_first_rows_and_keeps_the_faster(feats, slow, monkeypatch):
    """auto computes its first rows with each product (after an untimed warm-up), keeps the faster for
    the rest (and for later evaluations in the process), and the distances are right throughout."""
    q, g = feats
    calls = []

    def timed(name, real):
        def mm(a, b, out):
            calls.append((name, len(a)))
            time.sleep(0.02 if name == slow else 0.0)
            real(a, b, out)
        return mm

    monkeypatch.setattr(distances, "MIN_GFLOP", 0.0)
    monkeypatch.setattr(distances, "TRIAL_ROWS", 5)
    monkeypatch.setattr(distances, "WARM_ROWS", 2)
    monkeypatch.setattr(distances, "WARM_COLS", 3)
    monkeypatch.setattr(distances, "_CHOICE", {})
    monkeypatch.setattr(distances, "_MM", {"torch": timed("torch", distances._torch_mm),
                                           "numpy": timed("numpy", distances._numpy_mm)})
    blocks = distances.FeatureBlocks(q, g, product="auto")
    assert blocks.product is None
    got = np.concatenate([blocks(s, min(s + 3, len(q))).numpy().copy() for s in range(0, len(q), 3)])
    np.testing.assert_allclose(got, build_dist(q, g, "cosine"), rtol=0, atol=1e-5)
    fast = "numpy" if slow == "torch" else "torch"
    trial = [("torch", 2), ("torch", 5), ("torch", 5), ("numpy", 2), ("numpy", 5), ("numpy", 5)]
    assert calls[:6] == trial  # each product: a warm-up, then two timed pieces of real rows
    assert {n for n, _ in calls[6:]} == {fast} and 20 + sum(n for _, n in calls[6:]) == len(q)  # every row once
    assert distances.FeatureBlocks(q, g, product="auto").product == fast  # remembered


def test_small_products_and_other_devices_use_torch(feats):
    q, g = feats
    assert distances.product_backend(q, g, "auto") == "torch"  # below MIN_GFLOP: nothing timed
    meta = torch.empty(4, 24, device="meta")
    assert distances.product_backend(meta, meta, "auto") == "torch"
    with pytest.raises(CanuError, match="'numpy' computes on the CPU.*TEST.CANU.PRODUCT"):
        distances.product_backend(meta, meta, "numpy")
    with pytest.raises(CanuError, match="TEST.CANU.PRODUCT='blas' is not one of"):
        distances.FeatureBlocks(q, g, product="blas")


def test_evaluate_gives_the_same_metrics_with_either_product(feats):
    q, g = feats
    rng = np.random.default_rng(0)
    qp, gp = rng.integers(0, 9, len(q)), rng.integers(0, 9, len(g))
    qc, gc = rng.integers(0, 3, len(q)), rng.integers(0, 3, len(g))
    a = evaluate(q, g, qp, gp, qc, gc, product="torch")
    b = evaluate(q, g, qp, gp, qc, gc, product="numpy")
    np.testing.assert_allclose(a["all_AP"], b["all_AP"], atol=1e-6)
    assert abs(a["mAP"] - b["mAP"]) <= 1e-6 and np.array_equal(a["cmc"], b["cmc"])


def test_flagged_items_are_row_major_like_torch():
    mask = torch.rand(13, 29) < 0.3
    rows, cols = _row_col(_flagged(mask), mask.shape[1])
    ref = mask.nonzero(as_tuple=True)
    assert torch.equal(rows, ref[0]) and torch.equal(cols, ref[1]) and rows.dtype == torch.int64


def test_benchmark_eval_times_ours_beside_the_raw_product(tmp_path, capsys):
    """A tiny run of tools/benchmark_eval.py: our evaluator, fast-reid's python one (same metrics) and
    the raw products of the size, with the product ours ended with."""
    import json
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import benchmark_eval
    out = tmp_path / "eval.json"
    assert benchmark_eval.main(["--sizes", "60x400", "--dim", "16", "--methods", "ours", "fastreid-py",
                                "--json", str(out)]) == 0
    res = json.loads(out.read_text())["60x400"]
    assert set(res["product_s"]) == {"torch", "numpy"} and res["ours"]["product"] == "torch"  # below MIN_GFLOP
    assert res["fastreid-py"]["max_diff"] <= 1e-6
    assert res["ours"]["warm_time_s"] > 0 and res["ours"]["warm_dist_s"] > 0  # a second evaluation, same process
    out = capsys.readouterr().out
    assert "x the fp32 distance product alone" in out and "a later evaluation in the same process" in out


def _stable_map64(q, g, qp, gp, qc, gc):
    """mAP from float64 cosine distances with a stable sort (ties by gallery index), Market protocol."""
    qn = q.double() / q.double().norm(dim=1, keepdim=True)
    gn = g.double() / g.double().norm(dim=1, keepdim=True)
    dist = (1.0 - qn @ gn.T).numpy()
    aps = []
    for i in range(len(q)):
        order = np.argsort(dist[i], kind="stable")
        keep = ~((gp[order] == qp[i]) & (gc[order] == qc[i]))
        hits = (gp[order] == qp[i])[keep]
        if hits.any():
            ranks = np.flatnonzero(hits)
            aps.append(np.mean((np.arange(len(ranks)) + 1) / (ranks + 1)))
    return float(np.mean(aps))


@pytest.mark.parametrize("product", ["torch", "numpy"])
def test_map_equals_float64_with_ties(product):
    """mAP equal to the float64 distances' (stable ties) to 1e-6, with exactly tied gallery items."""
    rng = np.random.default_rng(5)
    gp, gc = rng.integers(0, 12, 300), rng.integers(0, 4, 300)
    centres = rng.standard_normal((12, 32))
    g = centres[gp] + 0.9 * rng.standard_normal((300, 32))
    g[150:200] = g[100:150]  # exact duplicates: tied distances, of the same and of other identities
    gp[175:200] = rng.integers(0, 12, 25)
    qp, qc = rng.integers(0, 12, 60), rng.integers(0, 4, 60)
    q = centres[qp] + 0.9 * rng.standard_normal((60, 32))
    q, g = torch.tensor(q, dtype=torch.float32), torch.tensor(g, dtype=torch.float32)
    ours = evaluate(q, g, qp, gp, qc, gc, product=product)
    assert abs(ours["mAP"] - _stable_map64(q, g, qp, gp, qc, gc)) <= 1e-6


def test_duplicate_rows_are_found_exactly():
    g = torch.randn(50, 70)
    g[[7, 30, 41]] = g[3].clone()
    g[12] = g[5]
    g[20, :64] = g[9, :64]  # the same leading values, another row: not a duplicate
    g[44] = g[8]
    g[44, 0], g[8, 0] = 0.0, -0.0  # -0.0 equals +0.0
    dst, src = distances.duplicate_rows(g)
    assert sorted(zip(dst.tolist(), src.tolist())) == [(7, 3), (12, 5), (30, 3), (41, 3), (44, 8)]
    assert distances.duplicate_rows(torch.randn(50, 70)) is None


def test_each_row_is_computed_once_when_chunks_do_not_divide_the_buffer(feats, monkeypatch):
    """A buffer of 7 rows served in chunks of 3: the buffer holds 6 (two whole chunks), so no chunk
    straddles two fills and no row is computed twice."""
    q, g = feats
    rows = []
    real = distances._MM["torch"]

    def counted(a, b, out):
        rows.append(len(a))
        real(a, b, out)

    monkeypatch.setattr(distances, "_MM", {"torch": counted, "numpy": distances._numpy_mm})
    monkeypatch.setattr(distances, "PRODUCT_BYTES", 4 * len(g) * 7)
    blocks = distances.FeatureBlocks(q, g, product="torch")
    got = np.concatenate([blocks(s, min(s + 3, len(q))).numpy().copy() for s in range(0, len(q), 3)])
    np.testing.assert_allclose(got, build_dist(q, g, "cosine"), rtol=0, atol=1e-5)
    assert sum(rows) == len(q) and max(rows) == 6
