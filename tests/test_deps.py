"""Deps that cannot drift: every stage in dvc.yaml lists its script and every dareg module the
script imports, transitively (imports inside functions count too), so a code change reruns the
stages it can change. Package __init__ files are left out (they hold no code here)."""
import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def module_file(name: str) -> Path | None:
    """src/dareg/a/b.py for dareg.a.b (None for a package or a name that is not a module)."""
    path = SRC.joinpath(*name.split("."))
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def imported_modules(path: Path) -> set[str]:
    """The dareg modules `path` imports, as dotted names."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "dareg"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.split(".")[0] == "dareg":
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}  # from dareg import losses
    return {name for name in found if module_file(name)}


def closure(script: Path) -> set[str]:
    """Repository-relative paths of `script` and every dareg module it reaches."""
    seen, todo = set(), [script]
    while todo:
        path = todo.pop()
        rel = path.relative_to(ROOT).as_posix()
        if rel in seen:
            continue
        seen.add(rel)
        todo += [module_file(name) for name in imported_modules(path)]
    return seen


def stages():
    for name, stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items():
        body = stage.get("do", stage)
        yield name, body["cmd"], [d for d in body.get("deps", []) if isinstance(d, str)]


@pytest.mark.parametrize("name,cmd,deps", list(stages()), ids=[s[0] for s in stages()])
def test_every_stage_depends_on_its_script_and_every_module_it_imports(name, cmd, deps):
    script = next(word for word in cmd.split() if word.startswith("stages/") and word.endswith(".py"))
    missing = sorted(closure(ROOT / script) - set(deps))
    assert not missing, f"{name}: add to its deps in dvc.yaml: {missing}"


def test_the_closure_sees_lazy_and_from_imports():
    reached = closure(ROOT / "stages" / "train.py")
    assert {"src/dareg/train.py", "src/dareg/losses.py", "src/dareg/linalg.py"} <= reached
