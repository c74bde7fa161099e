"""Shared fixtures: a copy of this repository on the tiny profile, run once with `dvc repro`."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from dareg import profile
from dareg.cache import available_cores

# Under pytest-xdist (`-n auto` in pyproject.toml) each worker, and the stages it starts, gets
# cores / workers threads: two workers each running torch on every core would oversubscribe.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    os.environ.setdefault("OMP_NUM_THREADS", str(max(
        1, available_cores() // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GIT_IDENTITY = ["-c", "user.name=dareg-tests", "-c", "user.email=tests@dareg.invalid"]
PROJECT_FILES = ["dvc.yaml", "params.yaml", "profiles", "stages", "src", ".gitignore", ".dvc/config",
                 ".dvcignore", "pyproject.toml"]


def env() -> dict:
    """The environment stages run in: this venv first on PATH, analytics off, no credentials."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("REDDIT_", "FLICKR_")) and k != "PYTHONPATH"}
    return {**clean, "PATH": f"{BIN}{os.pathsep}{clean['PATH']}", "DVC_NO_ANALYTICS": "1"}


def run(args: list[str] | str, cwd: Path, check: bool = True, offline: bool = False
        ) -> subprocess.CompletedProcess:
    """Run a command in `cwd`; `offline` puts it in a network namespace with only loopback."""
    if offline:
        command = args if isinstance(args, str) else " ".join(args)
        args = ["unshare", "--net", "--", "sh", "-c", f"ip link set lo up && {command}"]
    result = subprocess.run(args, cwd=cwd, env=env(), capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def can_isolate_network() -> bool:
    probe = subprocess.run(["unshare", "--net", "--", "sh", "-c", "ip link set lo up"],
                           capture_output=True)
    return shutil.which("unshare") is not None and probe.returncode == 0


def copy_project(dest: Path, profile_name: str | None = "tiny") -> Path:
    """This repository's pipeline files (no data, no lock, no metrics) in a git repo at `dest`,
    with profiles/<profile_name>.yaml applied (None: the demo profile as committed), committed.
    An existing copy is brought up to date (its data, lock and metrics stay: DVC reruns what the
    new files change)."""
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif src.exists():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    if profile_name:
        overlay = ROOT / "profiles" / f"{profile_name}.yaml"
        profile.apply(dest / "params.yaml", overlay, dest / "params.yaml")
    git = ["git", *GIT_IDENTITY]
    if not (dest / ".git").exists():
        run(["git", "init", "-q"], dest)
    run([*git, "add", "-A"], dest)
    run([*git, "commit", "-qm", f"project, profile {profile_name}", "--allow-empty"], dest)
    return dest


def set_params(path: Path, changes: dict) -> None:
    """Write {"regimes.da.weights.mmd": 0.5, ...} into a params file, comments kept."""
    yaml = YAML()
    data = yaml.load(path.read_text())
    for dotted, value in changes.items():
        *parents, key = dotted.split(".")
        node = data
        for name in parents:
            node = node[name]
        node[key] = value
    with open(path, "w") as f:
        yaml.dump(data, f)


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory) -> Path:
    """The whole DAG after `dvc repro` on the tiny profile, offline where the kernel allows it."""
    repo = copy_project(tmp_path_factory.mktemp("pipeline"))
    result = run("dvc repro", repo, offline=can_isolate_network())
    (repo / "repro.log").write_text(result.stdout + result.stderr)
    return repo


def pack_loose(folder: Path) -> Path:
    """A raw wiki folder as fetch_wiki leaves it, from loose test files: every file but the .mat
    packed into tar shards (dareg.shards), the loose copies removed, SHA256SUMS written."""
    from dareg import hashes, shards

    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix != ".mat"
                   and p.name != hashes.SUMS and shards.FOLDER not in p.relative_to(folder).parts)
    with shards.ShardWriter(folder, "wiki") as writer:
        for path in files:
            writer.add(path.relative_to(folder).as_posix(), path.read_bytes())
    for path in files:
        path.unlink()
    for sub in sorted((p for p in folder.iterdir() if p.is_dir() and p.name != shards.FOLDER)):
        shutil.rmtree(sub)
    hashes.write_sums(folder)
    return folder
