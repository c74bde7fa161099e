"""A committed copy of the session's pipeline repository, for tests that need git history
(a `git clone`, a queued experiment) without paying for another `dvc repro`."""
from __future__ import annotations

import shutil
from pathlib import Path

from conftest import run

GIT = ["git", "-c", "user.name=dareg-tests", "-c", "user.email=tests@dareg.invalid"]


def committed_copy(pipeline: Path, dest: Path) -> Path:
    """Copy `pipeline` to `dest` and commit its dvc.lock and git-tracked metrics there."""
    shutil.copytree(pipeline, dest, symlinks=True)
    (dest / "repro.log").unlink(missing_ok=True)
    (dest / ".dvc" / ".gitignore").write_text("/config.local\n/tmp\n/cache\n")
    run([*GIT, "add", "-A"], dest)
    run([*GIT, "commit", "-qm", "pipeline outputs"], dest)
    return dest
