#!/usr/bin/env python
"""The steps of ``tools/gpu_check.py``, each run in its own process (a crash or a time-out stops one
step, not the check): ``python tools/gpu_check_steps.py STEP --out result.json [options]``.

* ``train``:   one short synthetic run of a method (config + overrides) in-process with fast-reid's
  trainer; images/s of the last epoch's steps (``metrics.json``'s per-epoch train_s: data loading included,
  clustering and evaluation excluded) and whether AMP was really applied.
* ``cluster``: synthetic re-ID-like features (``clustering.synth``), then the whole DBSCAN path;
  stage times, peak host memory (VmHWM) and peak CUDA memory.
* ``eval``:    canu-plugin's evaluator on a synthetic query/gallery split of the given size.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tools")]


def _peak_host_gib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 2 ** 20


def _cuda():
    import torch
    return torch.cuda.is_available()


def _sync():
    import torch
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _peak_gpu_gib():
    import torch
    return torch.cuda.max_memory_allocated() / 2 ** 30 if torch.cuda.is_available() else None


def _amp_applied(step):
    """Whether a training step runs under autocast: fast-reid's AMPTrainer, or ours with a dtype."""
    from canu_plugin.engine.precision import PrecisionTrainer
    from fastreid.engine.train_loop import AMPTrainer
    return isinstance(step, AMPTrainer) or (isinstance(step, PrecisionTrainer) and step.amp_dtype is not None)


def step_train(a):
    """One method's run; images/s of its last epoch."""
    import canu_plugin  # noqa: F401
    from canu_plugin.engine import Trainer, set_datasets_root, setup_cfg
    from canu_plugin.engine.run_files import epoch_records
    set_datasets_root(a.root)
    os.environ["FASTREID_DATASETS"] = a.root
    cfg = setup_cfg(os.path.join(ROOT, a.config), list(a.opts) + ["OUTPUT_DIR", a.workdir])
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    t0 = time.perf_counter()
    trainer = Trainer(cfg)
    trainer.train()
    wall = time.perf_counter() - t0
    runs = [r for r in epoch_records(cfg.OUTPUT_DIR)["epochs"] if "train_s" in r]
    last = runs[-1]
    images = trainer.iters_per_epoch * cfg.SOLVER.IMS_PER_BATCH
    return {"images_per_s": images / last["train_s"], "iters_per_epoch": trainer.iters_per_epoch,
            "batch": cfg.SOLVER.IMS_PER_BATCH, "epochs": len(runs), "wall_s": wall,
            "trainer": type(trainer._trainer).__name__, "amp_asked": bool(cfg.SOLVER.AMP.ENABLED),
            "amp_applied": _amp_applied(trainer._trainer), "device": cfg.MODEL.DEVICE,
            "peak_gpu_gib": _peak_gpu_gib()}


def step_cluster(a):
    """Synthetic (N, D) features, then cluster_features; stage times and peaks."""
    from sklearn.metrics import adjusted_rand_score

    from canu_plugin.clustering import cluster_features
    from canu_plugin.clustering.synth import MARKET_IMGS_PER_ID, MSMT_IMGS_PER_ID, clustered_features
    t0 = time.perf_counter()
    x, ids, _ = clustered_features(a.n, a.dim, imgs_per_id=MARKET_IMGS_PER_ID if a.n < 20000 else MSMT_IMGS_PER_ID,
                                   seed=0)
    gen_s = time.perf_counter() - t0
    labels, _, info = cluster_features(x, backend=a.backend, precision=a.precision, return_info=True)
    _sync()
    keep = labels >= 0
    return {"n": a.n, "dim": a.dim, "gen_s": gen_s, "backend": info["backend"], "precision": a.precision,
            **{k: info[k] for k in ("knn_s", "jaccard_s", "dbscan_s", "total_s", "num_clusters", "num_outliers")},
            "ari_gt": float(adjusted_rand_score(ids[keep], labels[keep])) if keep.any() else 0.0,
            "peak_host_gib": _peak_host_gib(), "peak_gpu_gib": _peak_gpu_gib()}


def step_eval(a):
    """canu-plugin's evaluator on a synthetic Q x G split (features -> metrics timed)."""
    from benchmark_eval import make_split

    from canu_plugin.evaluation import evaluate
    x, pids, cams, is_query = make_split(a.q, a.g, a.dim, 6, 0)
    device = "cuda" if _cuda() else "cpu"
    evaluate(x[is_query][:64], x[~is_query], pids[is_query][:64], pids[~is_query], cams[is_query][:64],
             cams[~is_query], device=device)  # warm-up (CUDA context, kernels)
    _sync()
    t0 = time.perf_counter()
    res = evaluate(x[is_query], x[~is_query], pids[is_query], pids[~is_query], cams[is_query], cams[~is_query],
                   device=device)
    _sync()
    return {"q": a.q, "g": a.g, "dim": a.dim, "device": device, "seconds": time.perf_counter() - t0,
            "mAP": float(res["mAP"]) * 100, "R1": float(res["cmc"][0]) * 100, "peak_gpu_gib": _peak_gpu_gib()}


STEPS = {"train": step_train, "cluster": step_cluster, "eval": step_eval}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("step", choices=sorted(STEPS))
    p.add_argument("--out", required=True, help="result JSON")
    p.add_argument("--config", help="train: config file (relative to the repository)")
    p.add_argument("--root", help="train: dataset root")
    p.add_argument("--workdir", help="train: OUTPUT_DIR")
    p.add_argument("--opts", nargs="*", default=[], help="train: KEY VALUE overrides")
    p.add_argument("--n", type=int, help="cluster: samples")
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--backend", default="auto", help="cluster: k-NN backend")
    p.add_argument("--precision", default="fp32", help="cluster: torch backend's first pass")
    p.add_argument("--q", type=int, help="eval: queries")
    p.add_argument("--g", type=int, help="eval: gallery")
    return p.parse_args(argv)


def main(argv=None):
    a = parse_args(argv)
    from canu_plugin.errors import user_errors
    with user_errors():
        res = STEPS[a.step](a)
    Path(a.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
