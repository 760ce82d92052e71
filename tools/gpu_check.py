#!/usr/bin/env python
"""`make gpu-check`: run every CUDA path of canu-plugin once and time it, on a machine with a CUDA
build of torch, numpy / scipy / scikit-learn and no network (< 8 min on one recent GPU).

0. Environment: Python, torch, CUDA, and every package canu-plugin needs. A missing one stops the
   check here, with the wheels to bring (docs/clustering.md, "GPU check": ``pip download`` commands, ~43 MiB).
1. ``pytest -m cuda``: the CUDA-marked tests.
2. One short synthetic run of every method, on CUDA with AMP (ResNet-50, 256x128, batch 64):
   training images/s of each method without and with its discriminator.
3. A 2-process NCCL run (CANU, sharded k-NN) where there are 2 GPUs.
4. Clustering of synthetic features, D = 2048, at N = 12,936 / 32,621 / 100k / 1M.
5. The evaluator at Market-1501 (3,368 x 19,732) and MSMT17 (11,659 x 82,161) sizes.

Without CUDA it runs the same steps at CPU sizes (tiny runs, small N, Market size only), so that
the check itself is proven, and says what it skipped and why. Writes ``gpu_check.json`` and
``gpu_check.md`` in ``--out``; every step runs in its own process with a time limit.

    python tools/gpu_check.py                       # or: make gpu-check
    python tools/gpu_check.py --skip train ddp      # a subset
"""
import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tools")]
import gpu_check_report as report  # noqa: E402

# (import name, wheel to bring; versions are the ones this project is tested with)
PACKAGES = [("numpy", "numpy"), ("scipy", "scipy"), ("sklearn", "scikit-learn"), ("PIL", "pillow"),
            ("torchvision", "torchvision (the build matching your torch, from the same index as torch)"),
            ("fastreid", "fastreid==1.4.0"), ("yacs", "yacs==0.1.8"), ("faiss", "faiss-cpu==1.15.1"),
            ("tabulate", "tabulate==0.9.0"), ("termcolor", "termcolor==2.5.0"), ("yaml", "pyyaml==6.0.4"),
            ("tensorboard", "tensorboard==2.21.0"), ("google.protobuf", "protobuf==7.36.2"),
            ("absl", "absl-py==2.5.1"), ("pytest", "pytest==9.2.0"), ("pluggy", "pluggy==1.7.0"),
            ("iniconfig", "iniconfig==2.3.1"), ("pygments", "pygments==2.21.0"), ("packaging", "packaging==26.4"),
            ("pytest_timeout", "pytest-timeout==2.4.0"), ("matplotlib", "matplotlib==3.11.2"),
            ("contourpy", "contourpy==1.3.3"), ("cycler", "cycler==0.12.1"), ("fontTools", "fonttools==4.68.0"),
            ("kiwisolver", "kiwisolver==1.5.1"), ("pyparsing", "pyparsing==3.3.3"),
            ("dateutil", "python-dateutil==4.0.0")]
METHODS = [  # (method, config, discriminator override); the pairs differ by their discriminator only
    ("pseudo-label", "configs/synthetic/quick_pseudo.yml", None),
    ("pseudo-label + CANU", "configs/synthetic/quick_pseudo.yml", ["MODEL.CANU.ENABLED", "True"]),
    ("MMT", "configs/synthetic/quick_mmt.yml", None),
    ("CANU-MMT", "configs/synthetic/quick_mmt.yml", ["MODEL.CANU.ENABLED", "True"]),
    ("SSG", "configs/synthetic/quick_ssg.yml", None),
    ("CANU-SSG", "configs/synthetic/quick_ssg.yml", ["MODEL.CANU.ENABLED", "True", "MODEL.CANU.MU", "0.05"]),
    ("ACAN triplet only", "configs/synthetic/acan_triplet.yml", None),
    ("ACAN-OCE", "configs/synthetic/acan_oce.yml", []),
]
CUDA_SIZES = {"cluster": [12936, 32621, 100000, 1000000], "eval": [(3368, 19732), (11659, 82161)],
              "domain": dict(num_train_ids=64, num_test_ids=32, images_per_camera=(2, 4), num_distractors=8,
                             image_size=(64, 32))}
CPU_SIZES = {"cluster": [3000, 12936], "eval": [(3368, 19732)],
             "domain": dict(num_train_ids=16, num_test_ids=12, images_per_camera=(2, 4), num_distractors=4,
                            image_size=(32, 16))}
ACAN_TINY = ["MODEL.ACAN.PIDS_PER_GROUP", "4", "SOLVER.IMS_PER_BATCH", "16", "MODEL.ACAN.CAMERA_BATCH", "12",
             "MODEL.ACAN.HIDDEN_DIM", "16", "MODEL.ACAN.DIAG_IMAGES_PER_CAMERA", "5"]
STEP_NAMES = ("tests", "train", "ddp", "cluster", "eval")


def missing_packages():
    """[(import name, wheel)] of the packages that cannot be imported here."""
    out = []
    for name, wheel in PACKAGES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            out.append((name, wheel))
    return out


def missing_message(missing):
    """What to bring and how (pip download on a machine with network, pip install here)."""
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    pinned = [w for _, w in missing if " " not in w]
    other = [w for _, w in missing if " " in w]
    lines = [f"gpu-check: missing Python packages: {', '.join(n for n, _ in missing)}.", "",
             "On a machine with network (same CPU architecture), collect the wheels:",
             f"  pip download --no-deps --only-binary=:all: --python-version {py} "
             f"--platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 -d wheels {' '.join(pinned)}",
             "copy wheels/ here, then:",
             "  pip install --no-index --no-deps wheels/*.whl",
             "(or, without write access to site-packages: pip install --no-index --no-deps --target .deps "
             "wheels/*.whl && export PYTHONPATH=$PWD/.deps)"]
    lines += [f"Also needed: {w}" for w in other]
    return "\n".join(lines)


def environment():
    """Python, torch, CUDA and GPU facts for the report."""
    import torch
    env = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "python": platform.python_version(),
           "torch": torch.__version__, "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
           "gpus": torch.cuda.device_count() if torch.cuda.is_available() else 0, "cpus": os.cpu_count()}
    if env["cuda_available"]:
        p = torch.cuda.get_device_properties(0)
        env.update(gpu=p.name, gpu_mem_gib=round(p.total_memory / 2 ** 30, 1), capability=f"{p.major}.{p.minor}")
    return env


def _child(args, timeout, tmp, tag):
    """Run ``tools/gpu_check_steps.py args``; (status, result or error text, seconds)."""
    out = os.path.join(tmp, f"{tag}.json")
    cmd = [sys.executable, str(ROOT / "tools" / "gpu_check_steps.py"), *args, "--out", out]
    return _run(cmd, timeout, lambda proc: json.loads(Path(out).read_text()))


def _run(cmd, timeout, result):
    t0 = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return "failed", f"timed out after {timeout} s", time.perf_counter() - t0
    secs = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return "failed", " / ".join(tail) or f"exit status {proc.returncode}", secs
    return "ok", result(proc), secs


def step_tests(env, a, tmp):
    xml = os.path.join(tmp, "cuda_tests.xml")
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "tests", "-p", "no:cacheprovider", f"--junitxml={xml}"]
    status, res, secs = _run(cmd, a.timeout_tests, lambda p: report.junit_counts(xml))
    if status == "ok" and not env["cuda_available"]:
        return [dict(step="tests", item="pytest -m cuda", status="skipped", seconds=secs, result=res,
                     why=f"no CUDA device: the {res['tests']} CUDA-marked tests skip")]
    return [dict(step="tests", item="pytest -m cuda", status=status, seconds=secs, result=res)]


def _train_opts(env, method, config, extra):
    cuda = env["cuda_available"]
    opts = ["MODEL.DEVICE", "cuda" if cuda else "cpu", "SOLVER.AMP.ENABLED", str(cuda),
            "SOLVER.MAX_EPOCH", "2" if cuda else "1",  # CPU: a smoke run; CUDA: images/s of the 2nd epoch
            "SOLVER.CHECKPOINT_PERIOD", "100", "TEST.EVAL_PERIOD", "100", "TEST.CANU.PCA_CAMERAS", "[]",
            "DATASETS.NAMES", '("SynthA",)', "DATASETS.TESTS", '("SynthA",)', "SEED", "0"]
    acan = "acan" in config
    if cuda:
        opts += ["MODEL.BACKBONE.DEPTH", "50x", "MODEL.BACKBONE.FEAT_DIM", "2048", "INPUT.SIZE_TRAIN", "[256, 128]",
                 "INPUT.SIZE_TEST", "[256, 128]", "DATALOADER.NUM_WORKERS", "8", "TEST.IMS_PER_BATCH", "256"]
        opts += [] if acan else ["SOLVER.IMS_PER_BATCH", "64", "DATALOADER.NUM_INSTANCE", "16",
                                 "PSEUDO.ITERS_PER_EPOCH", "20"]
    else:
        opts += ["INPUT.SIZE_TRAIN", "[32, 16]", "INPUT.SIZE_TEST", "[32, 16]", "DATALOADER.NUM_WORKERS", "0"]
        opts += ACAN_TINY if acan else []
    return opts + list(extra or [])


def step_train(env, a, tmp):
    from canu_plugin.data.synthetic import generate_all
    sizes = CUDA_SIZES if env["cuda_available"] else CPU_SIZES
    root = os.path.join(tmp, "datasets")
    generate_all(root, names=("SynthA",), seed=0, **sizes["domain"])
    rows = []
    for i, (method, config, extra) in enumerate(METHODS):
        args = ["train", "--config", config, "--root", root, "--workdir", os.path.join(tmp, f"run{i}"),
                "--opts", *_train_opts(env, method, config, extra)]
        status, res, secs = _child(args, a.timeout_train, tmp, f"train{i}")
        rows.append(dict(step="train", item=method, status=status, seconds=secs, result=res, config=config,
                         discriminator=extra is not None))
    return rows


def step_ddp(env, a, tmp):
    if env["gpus"] < 2:
        why = "no CUDA device" if not env["cuda_available"] else f"needs 2 GPUs, found {env['gpus']}"
        return [dict(step="ddp", item="2-process NCCL (CANU, sharded k-NN)", status="skipped", why=why)]
    from canu_plugin.data.synthetic import generate_all
    root = os.path.join(tmp, "datasets")
    generate_all(root, names=("SynthA",), seed=0, **CUDA_SIZES["domain"])
    out = os.path.join(tmp, "ddp")
    opts = _train_opts(env, "", "configs/synthetic/quick_pseudo.yml", ["MODEL.CANU.ENABLED", "True"])
    cmd = [sys.executable, str(ROOT / "tools" / "train_net.py"), "--num-gpus", "2", "--config-file",
           "configs/synthetic/quick_pseudo.yml", *opts, "OUTPUT_DIR", out, "CLUSTERING.KNN_SHARDED", "auto"]
    os.environ["FASTREID_DATASETS"] = root
    status, res, secs = _run(cmd, a.timeout_ddp, lambda p: report.ddp_summary(out))
    return [dict(step="ddp", item="2-process NCCL (CANU, sharded k-NN)", status=status, seconds=secs, result=res)]


def step_cluster(env, a, tmp):
    cuda = env["cuda_available"]
    rows = []
    for n in (CUDA_SIZES if cuda else CPU_SIZES)["cluster"]:
        args = ["cluster", "--n", str(n), "--dim", "2048", "--precision", a.precision if cuda else "fp32"]
        status, res, secs = _child(args, a.timeout_cluster, tmp, f"cluster{n}")
        rows.append(dict(step="cluster", item=f"N={n}", status=status, seconds=secs, result=res))
    if not cuda:
        rows.append(dict(step="cluster", item="N=32621, 100000, 1000000", status="skipped",
                         why="no CUDA device: CPU sizes only (the growth on CPU: tools/benchmark_scale.py)"))
    return rows


def step_eval(env, a, tmp):
    cuda = env["cuda_available"]
    rows = []
    for q, g in (CUDA_SIZES if cuda else CPU_SIZES)["eval"]:
        status, res, secs = _child(["eval", "--q", str(q), "--g", str(g)], a.timeout_eval, tmp, f"eval{q}")
        rows.append(dict(step="eval", item=f"{q} x {g}", status=status, seconds=secs, result=res))
    if not cuda:
        rows.append(dict(step="eval", item="11659 x 82161 (MSMT17)", status="skipped",
                         why="no CUDA device: Market size only on CPU"))
    return rows


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="results/gpu_check", help="folder for gpu_check.json and gpu_check.md")
    p.add_argument("--skip", nargs="*", default=[], choices=STEP_NAMES, help="steps not to run")
    p.add_argument("--precision", default="fp16", help="CUDA clustering: the torch k-NN's first pass (same lists)")
    p.add_argument("--timeout-tests", type=int, default=240)
    p.add_argument("--timeout-train", type=int, default=120, help="per method")
    p.add_argument("--timeout-ddp", type=int, default=180)
    p.add_argument("--timeout-cluster", type=int, default=300, help="per size")
    p.add_argument("--timeout-eval", type=int, default=120, help="per size")
    return p.parse_args(argv)


def main(argv=None):
    a = parse_args(argv)
    missing = missing_packages()
    if missing:
        print(missing_message(missing), file=sys.stderr)
        return 2
    env = environment()
    print(report.header(env), flush=True)
    rows, t0 = [], time.perf_counter()
    steps = {"tests": step_tests, "train": step_train, "ddp": step_ddp, "cluster": step_cluster, "eval": step_eval}
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        for name, fn in steps.items():
            if name in a.skip:
                rows.append(dict(step=name, item="-", status="skipped", why="--skip"))
                continue
            try:
                done = fn(env, a, tmp)
            except Exception as e:  # noqa: BLE001 - one broken step must not hide the others' results
                done = [dict(step=name, item="-", status="failed", result=f"{type(e).__name__}: {e}")]
            for row in done:
                rows.append(row)
                print(report.progress_line(row), flush=True)
    os.makedirs(a.out, exist_ok=True)
    data = {"environment": env, "total_s": time.perf_counter() - t0, "rows": rows}
    Path(a.out, "gpu_check.json").write_text(json.dumps(data, indent=1))
    text = report.markdown(data)
    Path(a.out, "gpu_check.md").write_text(text)
    print("\n" + text + f"\n[gpu-check] {os.path.join(a.out, 'gpu_check.md')} and gpu_check.json")
    return 1 if any(r["status"] == "failed" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
