"""The real-face benchmark: every regime of run.regimes on UTKFace faces in IMDB-WIKI's layout
(female -> male), through this repository's own DVC stages, with profiles/faces.yaml.

In a copy of the project (`--keep DIR`, or a temporary folder) with the faces profile applied and
wiki.path pointing at the data, it runs `dvc repro summary@age` (fetch_wiki, clean_wiki, labels,
split, cache and each regime's train and evaluate stages come with it; the profile lists the age
task alone), and prints the report (MAE mean +- sd over seeds,
paired bootstraps against no_da and against each regime's control, feature MMD, collapse ratio,
best epochs) with the wall time. The faces are never copied into this repository.

    python benchmarks/faces.py --keep /tmp/faces --publish docs/faces
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from conftest import GIT_IDENTITY, copy_project, env, set_params  # noqa: E402


def sh(args: list[str], cwd: Path) -> str:
    result = subprocess.run(args, cwd=cwd, env=env(), capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout


def prepare(dest: Path, data: Path) -> list[str]:
    """The project copy with the faces profile and an absolute wiki.path; returns run.regimes."""
    if not (data / "wiki.mat").exists():
        raise SystemExit(f"{data}: no wiki.mat; pass --data with the utkface-wiki folder")
    copy_project(dest, "faces")  # made, or brought up to date with this checkout
    set_params(dest / "params.yaml", {"wiki.path": str(data.resolve())})
    sh(["git", *GIT_IDENTITY, "commit", "-qam", "faces: absolute wiki.path", "--allow-empty"], dest)
    return yaml.safe_load((dest / "params.yaml").read_text())["run"]["regimes"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/utkface-wiki")
    parser.add_argument("--keep", type=Path, help="project copy to use and keep (made if absent)")
    parser.add_argument("--publish", type=Path, help="copy the report and its figures here")
    args = parser.parse_args()
    dest = args.keep or Path(tempfile.mkdtemp(prefix="dareg-faces-"))
    dest.mkdir(parents=True, exist_ok=True)
    regimes = prepare(dest, args.data)
    start = time.perf_counter()
    out = sh(["dvc", "repro", "summary@age"], dest)  # the faces profile runs the age task alone
    total_s = time.perf_counter() - start
    trained = out.count("Running stage 'train@")
    print((dest / "metrics" / "reports" / "age.md").read_text())
    print(f"faces benchmark: {trained} train stages ({len(regimes)} regimes), dvc repro "
          f"{total_s / 60:.1f} min, in {dest}")
    if args.publish:  # reports/age.md links ../plots/age/*.png
        for folder in ("reports", "plots"):
            shutil.copytree(dest / "metrics" / folder, args.publish / folder, dirs_exist_ok=True)


if __name__ == "__main__":
    main()
