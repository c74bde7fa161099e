"""Stage fetch_dsprites: the dSprites task's raw data into --out, filled in a scratch folder and
renamed, so a folder that exists is complete:

- sprites.npy: (N, 64, 8) uint8, the binary 64x64 sprite of every listed image packed by
  np.packbits along its rows (dareg.dsprites.unpack); source rows first, then target rows;
- painting.png: the painting of the scream domain, RGB;
- source.csv, target.csv: one row per image, sorted by dSprites index: sprite (the index), shape,
  scale, orientation, x, y (latent classes), style (its domain), seed (its rendering seed,
  dareg.dsprites.render), row (in sprites.npy), official_test, and sprites, sprites_sha256,
  painting, painting_sha256 (the two files and their content hashes, for downstream stages).

Params `dsprites`: images generate (rendered here from the latents) | path | url (DeepMind's npz;
a url is downloaded, resumable, into --downloads, outside the DVC output); painting generate (a
stand-in texture) | path | url (The Scream). source: source_images drawn from the grid less the
source domain's official test split; target: the target domain's official test split plus
target_images drawn from the rest of the grid (dareg.dsprites.source_indices, target_indices).
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from dareg import dsprites, dsprites_npz, fetch, hashes, io, painting, params
from dareg.cli import run

log = logging.getLogger("fetch_dsprites")
SPRITES, PAINTING = "sprites.npy", "painting.png"
SOURCE_STREAM, TARGET_STREAM = 0, 1  # the rendering seeds' streams (dsprites.rendering_seeds)


def local_file(kind: str, path: str, url: str, sha256: str, downloads: Path) -> Path:
    """The file of a `path` or `url` source: the path, or the url downloaded into `downloads`."""
    if kind == "path":
        return Path(path).expanduser()
    return fetch.download(url, downloads / (Path(urlsplit(url).path).name or "download"),
                          sha256=sha256)


def get_painting(cfg: params.Dsprites, downloads: Path) -> tuple[np.ndarray, str | None]:
    """The painting, and the sha256 of the file it was read from (None for the stand-in)."""
    if cfg.painting == "generate":
        return painting.stand_in(), None
    path = local_file(cfg.painting, cfg.painting_path, cfg.painting_url, cfg.painting_sha256,
                      downloads)
    return dsprites.read_painting(path), hashes.sha256_file(path)


def get_sprites(cfg: params.Dsprites, indices: np.ndarray, downloads: Path
                ) -> tuple[np.ndarray, str | None]:
    """The binary sprites of `indices`, and the sha256 of the npz they were read from."""
    if cfg.images == "generate":
        return dsprites.generate_sprites(indices), None
    path = local_file(cfg.images, cfg.images_path, cfg.images_url, cfg.images_sha256, downloads)
    return dsprites_npz.read_sprites(path, indices), hashes.sha256_file(path)


def listing(indices: np.ndarray, official: np.ndarray, style: str, seed: int, stream: int,
            first_row: int) -> pd.DataFrame:
    """One domain's rows: index, latent classes, style, rendering seed, row, official_test."""
    classes = dsprites.index_to_latents(indices)
    return pd.DataFrame({"sprite": indices, **dict(zip(dsprites.LATENTS, classes.T)),
                         "style": style, "seed": dsprites.rendering_seeds(indices, seed, stream),
                         "row": first_row + np.arange(len(indices)), "official_test": official})


def write_folder(out: Path, sprites: np.ndarray, picture: np.ndarray,
                 tables: dict[str, pd.DataFrame]) -> dict[str, str]:
    """Fill a scratch folder beside `out`, then rename it onto `out`; return the file columns."""
    with fetch.scratch(out) as tmp:
        np.save(tmp / SPRITES, dsprites.pack(sprites))
        painting.write_png(tmp / PAINTING, picture)
        files = {"sprites": SPRITES, "sprites_sha256": hashes.sha256_file(tmp / SPRITES),
                 "painting": PAINTING, "painting_sha256": hashes.sha256_file(tmp / PAINTING)}
        for name, table in tables.items():
            io.write_csv(tmp / f"{name}.csv", table.assign(**files))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder to fill (the DVC output)")
    parser.add_argument("--metrics", type=Path, required=True, help="counts and provenance (JSON)")
    parser.add_argument("--downloads", type=Path, default=Path("data/downloads"),
                        help="where url downloads are kept and resumed (not a DVC output)")
    args = parser.parse_args()
    cfg = params.load().dsprites
    for stale in fetch.remove_stale_temporaries(args.out):
        log.info("removed %s, left by a killed run", stale)
    picture, painting_sha256 = get_painting(cfg, args.downloads)
    source = dsprites.source_indices(cfg.source_domain, cfg.source_images, cfg.seed)
    target, official = dsprites.target_indices(cfg.target_domain, cfg.target_images, cfg.seed)
    sprites, images_sha256 = get_sprites(cfg, np.concatenate([source, target]), args.downloads)
    tables = {"source": listing(source, np.zeros(len(source), dtype=bool), cfg.source_domain,
                                cfg.seed, SOURCE_STREAM, 0),
              "target": listing(target, official, cfg.target_domain, cfg.seed, TARGET_STREAM,
                                len(source))}
    files = write_folder(args.out, sprites, picture, tables)
    io.write_json(args.metrics, {
        "images": {"source": cfg.images, "sha256": images_sha256},
        "painting": {"source": cfg.painting, "sha256": painting_sha256,
                     "png_sha256": files["painting_sha256"]},
        "domains": {"source": cfg.source_domain, "target": cfg.target_domain},
        "counts": {"source": len(source), "target": len(target),
                   "target_official_test": int(official.sum()),
                   "target_drawn": int((~official).sum())},
        "sprites_sha256": files["sprites_sha256"], "seed": cfg.seed})
    log.info("%s ready: %d source (%s), %d target (%s) images", args.out, len(source),
             cfg.source_domain, len(target), cfg.target_domain)


if __name__ == "__main__":
    run(main)
