"""Benchmark: wall time and peak memory (whole process tree) of `dvc repro` on a profile.

Runs in a fresh copy of the repository so the working tree is untouched:
    python benchmarks/demo_repro.py              # the demo profile (params.yaml as committed)
    python benchmarks/demo_repro.py --profile tiny
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from conftest import copy_project, env  # noqa: E402  (same copy the tests make)


def tree_rss(pid: int) -> int:
    """Resident memory of a process and all its descendants, in bytes."""
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def run_sampled(cmd: list[str], cwd: Path, extra_env: dict | None = None) -> tuple[float, int, str]:
    """Run `cmd`, sampling the tree's memory every 0.1 s; returns (seconds, peak bytes, output)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env={**env(), **(extra_env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    peak = [0]

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss(proc.pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = proc.communicate()[0]
    sampler.join()
    if proc.returncode:
        raise SystemExit(f"{cmd} failed:\n{output[-3000:]}")
    return time.perf_counter() - start, peak[0], output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="", help="a profiles/<name>.yaml overlay; default: demo")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dareg-bench-"))
    try:
        repo = copy_project(work, args.profile or None)
        seconds, peak, output = run_sampled(["dvc", "repro"], repo)
        noop, _, _ = run_sampled(["dvc", "repro"], repo)
        print(output[-2500:])
        print(f"profile: {args.profile or 'demo'}  cpus: {os.cpu_count()}")
        print(f"dvc repro (full):  {seconds:7.1f} s   peak memory {peak / 2**30:.2f} GiB")
        print(f"dvc repro (no-op): {noop:7.1f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
