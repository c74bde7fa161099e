"""make gpu-check where there is no GPU (one line, exit 3), and its whole path at toy sizes on
the CPU (--cpu-smoke), which also runs tests/test_cuda.py on the CPU: the check and the CUDA
tests are exercised before a GPU is at hand."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
CHECK = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py")]


def run(args, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(CHECK + args, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_a_gpu_it_says_so_in_one_line_and_exits_3(tmp_path):
    result = run(["--out", str(tmp_path / "gpu.json")], tmp_path)
    assert result.returncode == 3
    assert result.stdout.count("\n") == 1 and "no CUDA device here" in result.stdout
    assert result.stderr == "" and not (tmp_path / "gpu.json").exists()


def test_cpu_smoke_runs_every_section_and_the_cuda_tests(tmp_path):
    out = tmp_path / "gpu.json"
    result = run(["--cpu-smoke", "--out", str(out)], tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["ok"] and report["smoke"] and report["device"] == "cpu"
    sections = report["sections"]
    assert set(sections) == {"tests", "matmul", "throughput", "loader", "original"}
    tests = sections["tests"]
    assert tests["failed"] == 0 and tests["passed"] >= 15  # the CUDA tests, run on the CPU
    assert {"singh7", "vgg16"} <= set(sections["throughput"])
    assert sections["throughput"]["vgg16"]["gflop_per_image"] > 0  # FLOPs were counted
    assert 0 < sections["loader"]["busy_share"] <= 1.5
    seeds = sections["original"]["regimes"]
    assert "da_seed" in seeds and all(r["finite"] for r in seeds.values())
    assert "CPU SMOKE RUN" in result.stdout and "| pytest -m cuda |" in result.stdout


# What a bare GPU machine may lack: everything but torch, torchvision, numpy, scipy, pandas,
# Pillow, tqdm, PyYAML and pytest.
ABSENT = ["dvc", "dvclive", "dvc_s3", "ruamel", "simplejpeg", "praw", "prawcore", "flickrapi",
          "requests", "urllib3", "matplotlib", "psutil", "moto", "boto3"]
BLOCKER = f"""
import sys
class _Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {ABSENT!r}:
            raise ImportError(f"{{name}} is not installed here (tests/test_gpu_check.py)")
sys.meta_path.insert(0, _Absent())
"""


def test_the_check_runs_where_only_torch_and_the_scientific_stack_are_installed(tmp_path):
    """sitecustomize makes every stage-only package unimportable, in the check and in the
    subprocesses it starts (pytest, torchrun, predict, the evaluate stage)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{ROOT / 'src'}"}
    probe = subprocess.run([sys.executable, "-c", "import dvc"], env=env, capture_output=True,
                           text=True)
    assert probe.returncode != 0 and "not installed here" in probe.stderr  # the blocker works
    out = tmp_path / "gpu.json"
    result = subprocess.run(CHECK + ["--cpu-smoke", "--sections", "tests", "original", "--out", str(out)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert json.loads(out.read_text())["sections"]["tests"]["failed"] == 0
