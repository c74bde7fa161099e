"""The fetch_dsprites stage end to end: the listed images with their sprites and the painting,
rendered here, read from DeepMind's npz layout by path or served on loopback; byte-identical
reruns; and bad inputs stopped with one line naming the file and the fix."""
from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from conftest import ROOT, env
from dareg import dsprites, hashes, painting
from dareg.demo.files import serve_folder
from test_dsprites import write_npz

STAGE = ROOT / "stages" / "fetch_dsprites.py"
OUT, METRICS = "data/raw/dsprites", "metrics/fetch_dsprites.json"
SMALL = {"source_domain": "color", "target_domain": "scream", "source_images": 30,
         "target_images": 20, "seed": 5}


def write_params(folder: Path, **changes) -> None:
    """folder/params.yaml: the repository's, with the small draw above and `changes` in dsprites."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["dsprites"].update(SMALL, **changes)
    (folder / "params.yaml").write_text(yaml.safe_dump(raw))


def fetch_stage(folder: Path, monkeypatch, out: str = OUT, **changes) -> Path:
    """Run stages/fetch_dsprites.py in-process in `folder` with `changes`; return the output."""
    write_params(folder, **changes)
    monkeypatch.chdir(folder)
    monkeypatch.setattr(sys, "argv", ["fetch_dsprites.py", "--out", out, "--metrics", METRICS,
                                      "--downloads", "downloads"])
    runpy.run_path(str(STAGE), run_name="__main__")
    return folder / out


def listed(out: Path) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """(source table, target table, unpacked sprites) of a stage output."""
    sprites = dsprites.unpack(np.load(out / "sprites.npy"))
    return pd.read_csv(out / "source.csv"), pd.read_csv(out / "target.csv"), sprites


def drawn_indices() -> np.ndarray:
    """Every index the SMALL params list: the source draw, then the target's."""
    source = dsprites.source_indices("color", SMALL["source_images"], SMALL["seed"])
    target, _ = dsprites.target_indices("scream", SMALL["target_images"], SMALL["seed"])
    return np.concatenate([source, target])


def test_generate_lists_the_draws_with_their_sprites(tmp_path, monkeypatch):
    """Source: its seeded draw, none of color's official test; target: all of scream's official
    test plus its draw; each row's sprite in sprites.npy; the files' hashes in every row."""
    out = fetch_stage(tmp_path, monkeypatch)
    source, target, sprites = listed(out)
    test = dsprites.official_test("scream")
    assert len(source) == 30 and len(target) == len(test) + 20
    assert not source.sprite.isin(dsprites.official_test("color")).any()
    assert set(test) <= set(target.sprite) and target.official_test.sum() == len(test)
    assert set(target.sprite[target.official_test]) == set(test)
    assert (source["style"] == "color").all() and (target["style"] == "scream").all()
    both = pd.concat([source, target])
    assert both.row.tolist() == list(range(len(both))) and len(sprites) == len(both)
    assert np.array_equal(sprites, dsprites.generate_sprites(both.sprite))
    assert np.array_equal(both[list(dsprites.LATENTS)].to_numpy(),
                          dsprites.index_to_latents(both.sprite))
    assert (both.seed >= 0).all() and both.seed.nunique() == len(both)
    assert (both.sprites_sha256 == hashes.sha256_file(out / "sprites.npy")).all()
    assert (both.painting_sha256 == hashes.sha256_file(out / "painting.png")).all()
    assert np.array_equal(dsprites.read_painting(out / "painting.png"), painting.stand_in())
    metrics = json.loads((tmp_path / METRICS).read_text())
    assert metrics["counts"] == {"source": 30, "target": len(target),
                                 "target_official_test": len(test), "target_drawn": 20}
    assert metrics["domains"] == {"source": "color", "target": "scream"}


def test_reruns_are_byte_identical_and_clean_a_killed_run(tmp_path, monkeypatch):
    """Same params, same bytes; a scratch folder left by a killed run is removed."""
    out = fetch_stage(tmp_path, monkeypatch)
    first = {p.name: p.read_bytes() for p in out.iterdir()} | {
        "metrics": (tmp_path / METRICS).read_bytes()}
    stale = out.parent / ".dsprites.abcd1234.tmp"
    stale.mkdir()
    (stale / "sprites.npy").write_bytes(b"half")
    fetch_stage(tmp_path, monkeypatch)
    second = {p.name: p.read_bytes() for p in out.iterdir()} | {
        "metrics": (tmp_path / METRICS).read_bytes()}
    assert not stale.exists()
    assert sorted(first) == ["metrics", "painting.png", "source.csv", "sprites.npy", "target.csv"]
    assert first == second


def test_the_source_domain_does_not_change_the_target(tmp_path, monkeypatch):
    """Source and target are separate draws: another source domain, the same target rows."""
    _, color_target, _ = listed(fetch_stage(tmp_path, monkeypatch))
    source, noisy_target, _ = listed(fetch_stage(tmp_path, monkeypatch, source_domain="noisy"))
    columns = ["sprite", "style", "seed", "official_test"]
    assert color_target[columns].equals(noisy_target[columns])
    assert not source.sprite.isin(dsprites.official_test("noisy")).any()


def test_path_reads_the_sprites_from_deepmind_layout(tmp_path, monkeypatch):
    """An npz holding the listed images (and others, shuffled): each row's sprite is the file's."""
    wanted = np.unique(drawn_indices())
    extra = np.setdiff1d(np.random.default_rng(1).choice(dsprites.GRID, 50), wanted)
    indices = np.random.default_rng(2).permutation(np.concatenate([wanted, extra]))
    imgs = np.random.default_rng(3).integers(0, 2, (len(indices), 64, 64), dtype=np.uint8)
    write_npz(tmp_path / "dsprites.npz", indices, imgs)
    out = fetch_stage(tmp_path, monkeypatch, images="path",
                      images_path=str(tmp_path / "dsprites.npz"))
    source, target, sprites = listed(out)
    position = {index: row for row, index in enumerate(indices)}
    both = pd.concat([source, target])
    assert np.array_equal(sprites, imgs[[position[i] for i in both.sprite]])
    metrics = json.loads((tmp_path / METRICS).read_text())
    assert metrics["images"] == {"source": "path",
                                 "sha256": hashes.sha256_file(tmp_path / "dsprites.npz")}


def test_url_downloads_the_npz_and_the_painting(tmp_path, monkeypatch):
    """Both served on loopback: the npz's sprites, and the painting thumbnailed to 215 x 274."""
    served = tmp_path / "served"
    served.mkdir()
    indices = np.unique(drawn_indices())
    imgs = np.random.default_rng(4).integers(0, 2, (len(indices), 64, 64), dtype=np.uint8)
    write_npz(served / "dsprites.npz", indices, imgs, compressed=False)
    big = Image.fromarray(painting.stand_in()).resize((430, 548))
    big.save(served / "The_Scream.png")
    with serve_folder(served) as base_url:
        out = fetch_stage(tmp_path, monkeypatch, images="url",
                          images_url=f"{base_url}/dsprites.npz",
                          images_sha256=hashes.sha256_file(served / "dsprites.npz"),
                          painting="url", painting_url=f"{base_url}/The_Scream.png")
    source, target, sprites = listed(out)
    both = pd.concat([source, target])
    assert np.array_equal(sprites, imgs[np.searchsorted(indices, both.sprite)])
    picture = dsprites.read_painting(out / "painting.png")
    assert picture.shape == (274, 215, 3)
    assert np.array_equal(picture, dsprites.read_painting(served / "The_Scream.png"))
    assert (tmp_path / "downloads" / "dsprites.npz").is_file()
    metrics = json.loads((tmp_path / METRICS).read_text())
    assert metrics["painting"]["sha256"] == hashes.sha256_file(served / "The_Scream.png")


def stage_error(folder: Path, **changes) -> str:
    """Run the stage as DVC does (a subprocess) with `changes`; assert it stops with exit status
    2, one line `error: ...` and no output; return that line."""
    write_params(folder, **changes)
    result = subprocess.run([sys.executable, str(STAGE), "--out", OUT, "--metrics", METRICS],
                            cwd=folder, env=env(), capture_output=True, text=True)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and lines[-1].startswith("error: "), result.stderr
    assert not (folder / OUT).exists() and not (folder / METRICS).exists()
    return lines[-1]


@pytest.mark.parametrize("replace, message", [
    ({"latents_classes": None}, "field 'latents_classes' missing"),
    ({"imgs": np.zeros((2, 32, 32), np.uint8)},
     "field 'imgs' is uint8 (2, 32, 32), not uint8 (N, 64, 64)"),
    ({"latents_values": np.zeros((2, 6), np.float32)}, "field 'latents_values' is float32"),
    ({"latents_classes": np.array([[0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 32, 0]])},
     "row 1 of latents_classes, [0, 0, 0, 0, 32, 0], is off the grid"),
])
def test_an_npz_not_in_deepmind_layout_stops_the_stage(tmp_path, replace, message):
    """A field missing, a wrong shape or dtype, latents off the grid: exit 2, one line."""
    write_npz(tmp_path / "bad.npz", [0, 1], np.zeros((2, 64, 64)), **replace)
    line = stage_error(tmp_path, images="path", images_path=str(tmp_path / "bad.npz"))
    assert f"error: {tmp_path / 'bad.npz'}: {message}" in line
    assert "expected DeepMind's dSprites npz" in line or "use DeepMind's file" in line


def test_an_unreadable_painting_stops_the_stage(tmp_path):
    """A painting file Pillow cannot read: exit 2, one line naming it and the way out."""
    (tmp_path / "scream.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    line = stage_error(tmp_path, painting="path", painting_path=str(tmp_path / "scream.jpg"))
    assert f"error: {tmp_path / 'scream.jpg'}: not an image Pillow can read" in line
    assert "dsprites.painting: generate" in line
