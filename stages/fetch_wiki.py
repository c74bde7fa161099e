"""Stage fetch_wiki: IMDB-WIKI's wiki_crop into --out: wiki.mat, SHA256SUMS and the crops packed in
tar shards (shards/wiki-NNNNNN.tar, members named NN/<file>.jpg as in wiki_crop; dareg.shards).

Params `wiki`: source demo (a synthetic tarball served and downloaded on loopback), url (download
wiki.url, resumable, into --downloads, outside the DVC output) or path (a folder or a tarball).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from urllib.parse import urlsplit

from dareg import fetch, hashes, params, shards
from dareg.cli import run
from dareg.demo.faces import write_wiki_tar
from dareg.demo.files import serve_folder
from dareg.errors import DataError

log = logging.getLogger("fetch_wiki")


def fetch_demo(cfg: params.Wiki, out: Path) -> None:
    with fetch.scratch(out) as tmp:  # beside --out, so a killed run's leftovers are found
        served = tmp / "served"
        write_wiki_tar(served / "wiki_crop.tar", cfg.demo_entries, cfg.demo_seed)
        with serve_folder(served) as base_url:
            tar_path = fetch.download(f"{base_url}/wiki_crop.tar", tmp / "wiki_crop.tar")
        fetch.pack_tar(tar_path, out)


def fetch_url(cfg: params.Wiki, out: Path, downloads: Path) -> None:
    name = Path(urlsplit(cfg.url).path).name or "wiki_crop.tar"
    tar_path = fetch.download(cfg.url, downloads / name, sha256=cfg.sha256)
    fetch.pack_tar(tar_path, out)


def fetch_path(cfg: params.Wiki, out: Path) -> None:
    source = Path(cfg.path).expanduser()
    if source.is_dir():
        fetch.check_wiki_folder(source)
        fetch.pack_folder(source, out)
    elif source.is_file():
        fetch.pack_tar(source, out)
    else:
        raise DataError(f"params.yaml: wiki.path {cfg.path!r} is neither a folder nor a file; "
                        "point it at a wiki_crop folder (holding wiki.mat) or at wiki_crop.tar")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="folder to fill (the DVC output)")
    parser.add_argument("--downloads", type=Path, default=Path("data/downloads"),
                        help="where url downloads are kept and resumed (not a DVC output)")
    args = parser.parse_args()
    cfg = params.load().wiki
    for stale in fetch.remove_stale_temporaries(args.out):
        log.info("removed %s, left by a killed run", stale)
    if cfg.source == "demo":
        fetch_demo(cfg, args.out)
    elif cfg.source == "url":
        fetch_url(cfg, args.out, args.downloads)
    else:
        fetch_path(cfg, args.out)
    fetch.check_wiki_folder(args.out)
    shards.read_index(args.out)  # the index is there: the folder is complete
    hashes.write_sums(args.out)  # what downstream stages depend on: wiki.mat, shards, index
    log.info("%s ready (source: %s)", args.out, cfg.source)


if __name__ == "__main__":
    run(main)
