"""tools/gpu_check.py: what it says when a package is missing, and its report (the steps themselves
run in `make gpu-check`)."""
import importlib.util
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[1] / "tools"


@pytest.fixture(scope="module")
def gpu_check():
    sys.path.insert(0, str(TOOLS))
    spec = importlib.util.spec_from_file_location("gpu_check", TOOLS / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_missing_package_stops_with_the_wheels_to_bring(gpu_check, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("fastreid", "faiss", "torchvision") else real(name, *a))
    assert gpu_check.main(["--out", "unused"]) == 2
    err = capsys.readouterr().err
    assert "missing Python packages: torchvision, fastreid, faiss" in err
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert f"pip download --no-deps --only-binary=:all: --python-version {py}" in err
    assert "fastreid==1.4.0 faiss-cpu==1.15.1" in err and "matplotlib==3.11.2" not in err  # only what is missing
    assert "pip install --no-index --no-deps wheels/*.whl" in err
    assert "Also needed: torchvision (the build matching your torch" in err


def test_nothing_is_missing_here(gpu_check):
    assert gpu_check.missing_packages() == []


def test_report_lists_every_step_with_why_it_was_skipped(gpu_check, tmp_path):
    report = gpu_check.report
    xml = tmp_path / "t.xml"
    xml.write_text('<testsuites><testsuite name="pytest" tests="7" failures="1" errors="0" skipped="5"/></testsuites>')
    counts = report.junit_counts(str(xml))
    assert counts == {"tests": 7, "failures": 1, "errors": 0, "skipped": 5, "passed": 1}
    env = {"date": "2026-01-01 00:00 UTC", "python": "3.12.0", "torch": "2.x", "cuda": None, "cuda_available": False,
           "gpus": 0, "cpus": 2}
    train = {"images_per_s": 80.0, "device": "cpu", "batch": 16, "trainer": "SimpleTrainer", "amp_asked": False,
             "amp_applied": False, "peak_gpu_gib": None}
    rows = [dict(step="tests", item="pytest -m cuda", status="skipped", seconds=3, result=counts, why="no CUDA device"),
            dict(step="train", item="pseudo-label", status="ok", seconds=9, result=train, discriminator=False),
            dict(step="train", item="pseudo-label + CANU", status="ok", seconds=9, discriminator=True,
                 result=dict(train, images_per_s=60.0)),
            dict(step="ddp", item="2-process NCCL", status="skipped", why="no CUDA device"),
            dict(step="eval", item="3368 x 19732", status="failed", seconds=1, result="boom")]
    text = report.markdown({"environment": env, "total_s": 21.0, "rows": rows})
    assert "no CUDA device (CPU sizes)" in text
    assert "| ddp | 2-process NCCL | skipped | - | no CUDA device |" in text
    assert "| eval | 3368 x 19732 | failed | 1 | boom |" in text
    assert "| pseudo-label + CANU | cpu | 16 | 60 | 0.75 |" in text
    assert "passed 1" in text
