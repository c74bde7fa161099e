"""Profiles: small overlays of params.yaml (the demo profile) for other settings.

`python -m dareg.profile profiles/original.yaml` rewrites params.yaml with the overlay's values,
keeping its comments; every overlay key must already exist there (a typo fails, naming the key).
"""
from __future__ import annotations

import argparse
import io
from pathlib import Path

from dareg import params
from dareg.io import write_text
from dareg.params import ParamsError


def merge(base: dict, overlay: dict, where: str = "") -> None:
    """Write `overlay` into `base` in place; mappings merge key by key, anything else replaces."""
    for key, value in overlay.items():
        name = f"{where}.{key}" if where else key
        if key not in base:
            raise ParamsError(f"profile: key {name!r} is not in params.yaml; check its spelling")
        if isinstance(value, dict) and isinstance(base[key], dict) and not name.startswith("regimes."):
            merge(base[key], value, name)
        else:
            base[key] = value


def apply(params_path: Path, overlay_path: Path, out_path: Path) -> None:
    """params.yaml + overlay -> out_path, checked against the schema before it is written."""
    from ruamel.yaml import YAML  # here: `merge` alone needs no ruamel (the GPU check uses it)

    yaml = YAML()
    yaml.preserve_quotes = True
    base = yaml.load(params_path.read_text(encoding="utf-8"))
    overlay = yaml.load(overlay_path.read_text(encoding="utf-8")) or {}
    merge(base, overlay)
    buffer = io.StringIO()
    yaml.dump(base, buffer)
    params.parse(YAML(typ="safe").load(buffer.getvalue()), str(overlay_path))
    write_text(out_path, buffer.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overlay", type=Path, help="profiles/<name>.yaml")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()
    apply(args.params, args.overlay, args.params)
    print(f"{args.params}: applied {args.overlay}; `git checkout {args.params}` returns to the demo")


if __name__ == "__main__":
    main()
