"""Exact k-NN (faiss) and backend selection of canu_plugin.clustering.knn."""
import numpy as np
import pytest

from canu_plugin.clustering import knn
from canu_plugin.clustering.inputs import as_unit_features
from canu_plugin.errors import CanuError


def _unit(n, d, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_matches_brute_force():
    x = _unit(500, 24)
    sims, idx = knn.knn_search(x, 12, backend="faiss-cpu")
    gram = x.astype(np.float64) @ x.T.astype(np.float64)
    expected = np.argsort(-gram, axis=1, kind="stable")[:, :12]
    assert idx.dtype == np.int64 and sims.dtype == np.float32
    np.testing.assert_array_equal(idx, expected)
    np.testing.assert_allclose(sims, np.take_along_axis(gram, expected, axis=1), atol=1e-5)
    np.testing.assert_array_equal(idx[:, 0], np.arange(500))  # every point is its own nearest


def test_chunking_does_not_change_results():
    x = _unit(1000, 32, seed=1)
    s1, i1 = knn.knn_search(x, 30, chunk=100000)
    s2, i2 = knn.knn_search(x, 30, chunk=97)  # 11 balanced chunks of ~91 queries
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(s1, s2, atol=1e-6)


def test_auto_backend_is_cpu_without_gpu_faiss():
    import faiss
    if faiss.get_num_gpus() > 0:
        pytest.skip("faiss has GPU support here")
    assert knn.resolve_backend("auto") == "faiss-cpu"
    assert knn.resolve_backend("faiss-cpu") == "faiss-cpu"


def test_forcing_gpu_without_gpu_faiss_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(knn, "_faiss_gpus", lambda faiss: 0)
    with pytest.raises(CanuError, match="faiss-gpu.*no GPU support.*KNN_BACKEND"):
        knn.resolve_backend("faiss-gpu")
    with pytest.raises(CanuError, match="no GPU support"):
        knn.knn_search(_unit(50, 8), 5, backend="faiss-gpu")


def test_forcing_gpu_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(knn, "_faiss_gpus", lambda faiss: 1)
    monkeypatch.setattr(knn, "_torch_has_cuda", lambda: False)
    with pytest.raises(CanuError, match="torch sees no CUDA"):
        knn.resolve_backend("faiss-gpu")
    assert knn.resolve_backend("auto") == "faiss-cpu"


def test_auto_picks_gpu_when_both_faiss_and_torch_have_one(monkeypatch):
    monkeypatch.setattr(knn, "_faiss_gpus", lambda faiss: 2)
    monkeypatch.setattr(knn, "_torch_has_cuda", lambda: True)
    assert knn.resolve_backend("auto") == "faiss-gpu"


def test_bad_arguments():
    x = _unit(20, 8)
    with pytest.raises(CanuError, match="unknown k-NN backend"):
        knn.resolve_backend("annoy")
    with pytest.raises(CanuError, match="1 <= k <= N"):
        knn.knn_search(x, 21)
    with pytest.raises(CanuError, match="chunk"):
        knn.knn_search(x, 5, chunk=0)


def test_input_conversion_and_validation():
    rng = np.random.default_rng(3)
    raw = rng.standard_normal((40, 6)) * 5.0  # float64, not normalised
    x = as_unit_features(raw)
    assert x.dtype == np.float32 and x.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-6)
    unit = x.copy()
    assert as_unit_features(unit) is unit  # already unit float32: no copy
    np.testing.assert_allclose(as_unit_features(raw.astype(np.float16)), x, atol=2e-3)
    bad = raw.copy()
    bad[7, 2] = np.nan
    with pytest.raises(CanuError, match="NaN or inf in 1 of 40 rows .first: row 7"):
        as_unit_features(bad)
    bad[7, 2] = np.inf
    with pytest.raises(CanuError, match="NaN or inf"):
        as_unit_features(bad)
    with pytest.raises(CanuError, match="2-D"):
        as_unit_features(raw[0])
    with pytest.raises(CanuError, match="2-D"):
        as_unit_features(raw.reshape(4, 10, 6))
    with pytest.raises(CanuError, match="empty"):
        as_unit_features(np.zeros((0, 6)))
    zero = raw.copy()
    zero[3] = 0
    with pytest.raises(CanuError, match="row 3 is all zeros"):
        as_unit_features(zero)
    with pytest.raises(CanuError, match="dtype"):
        as_unit_features(raw.astype(np.complex64))


def test_torch_tensor_input():
    torch = pytest.importorskip("torch")
    raw = np.random.default_rng(4).standard_normal((30, 5)).astype(np.float32)
    np.testing.assert_array_equal(as_unit_features(torch.from_numpy(raw).double()), as_unit_features(raw))
    assert as_unit_features(torch.from_numpy(raw).to(torch.bfloat16)).dtype == np.float32
