"""Benchmark: the real pipeline with datasets of the real sizes in place, in both raw layouts in
the same run: tar shards (this tree) and loose files (the last commit before shards, --loose-ref).
For each: `dvc status` and a no-op `dvc repro` (medians of --repeats), `dvc push` to an empty
folder remote, `dvc pull` into a fresh clone, and a `dvc pull` of the raw data from moto's S3
server through dvc-s3 (with --s3). Sizes: 62,328 Wikipedia entries (about 60,000 crops),
10,000 Reddit posts and 12,000 Flickr photos, from the offline demo generators.

    python benchmarks/scale_pipeline.py --s3        # about 30 minutes on 2 cores
    python benchmarks/scale_pipeline.py --wiki 5000 --reddit 1000 --flickr 1000   # smaller

Runs in fresh copies (the working tree is untouched). Training is cut to one epoch of two steps
and three regimes (the figures here are about the data, not the models).
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dareg import profile
from demo_repro import ROOT, copy_project, env, run_sampled  # noqa: E402  (benchmarks/ on sys.path)

LOOSE_REF = "4ab56bc"  # the last commit whose raw folders hold loose image files
GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@dareg.invalid"]


def overlay(path: Path, wiki: int, reddit: int, flickr: int) -> Path:
    """The real datasets' sizes for the demo sources; training cut to almost nothing."""
    path.write_text(f"wiki:\n  demo_entries: {wiki}\nreddit:\n  demo_posts: {reddit}\n"
                    f"  limit: {reddit}\nflickr:\n  demo_photos: {flickr}\n"
                    f"  calls_per_second: 20.0\ntrain:\n  epochs: 1\n  steps_per_epoch: 2\n"
                    f"run:\n  regimes: [no_source, no_da, da]\n")
    return path


def sh(cmd: list[str], cwd: Path) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed in {cwd}:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return result.stdout


def prepare(repo: Path, layout: str, loose_ref: str, sizes: Path) -> None:
    """A copy of the project in `layout`, with the sizes applied, fully reproduced and committed."""
    repo.mkdir(parents=True)
    if layout == "shards":
        copy_project(repo, None)
    else:  # the old tree, from git, as a fresh repository
        archive = subprocess.run(["git", "archive", loose_ref, "dvc.yaml", "params.yaml", "profiles",
                                  "stages", "src", ".gitignore", ".dvc/config", ".dvcignore",
                                  "pyproject.toml"], cwd=ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "-x"], input=archive.stdout, cwd=repo, check=True)
        sh(["git", "init", "-q"], repo)
        sh([*GIT, "add", "-A"], repo)
        sh([*GIT, "commit", "-qm", "loose layout"], repo)
    profile.apply(repo / "params.yaml", sizes, repo / "params.yaml")
    # the stages import dareg from their own src/ (the loose tree's code is not this one's)
    seconds, peak, _ = run_sampled(["dvc", "repro"], repo, extra_env={"PYTHONPATH": str(repo / "src")})
    print(f"[{layout}] dvc repro (full, data generated and scraped): {seconds:7.1f} s", flush=True)
    sh([*GIT, "add", "-A"], repo)
    sh([*GIT, "commit", "-qm", "reproduced"], repo)


def timed(repo: Path, cmd: list[str], repeats: int, extra_env=None) -> list[float]:
    return [run_sampled(cmd, repo, extra_env=extra_env)[0] for _ in range(repeats)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def moto(work: Path):
    """moto's S3 server on a loopback port with a bucket `dareg`; returns (process, endpoint)."""
    import boto3
    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1",
                               "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION="us-east-1")
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="dareg")
            return server, endpoint
        except Exception:  # not listening yet
            time.sleep(0.2)
    raise SystemExit("moto_server did not start")


def measure(work: Path, layout: str, args, endpoint: str | None) -> dict:
    repo = work / layout
    py = {"PYTHONPATH": str(repo / "src")}
    raw = repo / "data" / "raw"
    files = sum(1 for p in raw.rglob("*") if p.is_file())
    out = {"raw files": files,
           "dvc status": statistics.median(timed(repo, ["dvc", "status"], args.repeats, py)),
           "dvc repro (no-op)": statistics.median(timed(repo, ["dvc", "repro"], args.repeats, py))}
    remote = work / f"remote-{layout}"
    sh(["dvc", "remote", "add", "-f", "bench", str(remote)], repo)
    out["dvc push (folder)"] = run_sampled(["dvc", "push", "-r", "bench"], repo)[0]
    clone = work / f"clone-{layout}"
    sh(["git", "clone", "-q", str(repo), str(clone)], work)
    sh(["dvc", "remote", "add", "-f", "bench", str(remote)], clone)
    out["dvc pull (folder, fresh clone)"] = run_sampled(["dvc", "pull", "-r", "bench"], clone)[0]
    if endpoint:
        sh(["dvc", "remote", "add", "-f", "s3", f"s3://dareg/{layout}"], repo)
        sh(["dvc", "remote", "modify", "s3", "endpointurl", endpoint], repo)
        raw_stages = ["fetch_wiki", "scrape_reddit", "scrape_flickr"]
        run_sampled(["dvc", "push", "-r", "s3", *raw_stages], repo)
        s3_clone = work / f"s3-clone-{layout}"
        sh(["git", "clone", "-q", str(repo), str(s3_clone)], work)
        sh(["dvc", "remote", "add", "-f", "s3", f"s3://dareg/{layout}"], s3_clone)
        sh(["dvc", "remote", "modify", "s3", "endpointurl", endpoint], s3_clone)
        out["dvc pull of the raw data (moto S3)"] = run_sampled(["dvc", "pull", "-r", "s3", *raw_stages],
                                                                s3_clone)[0]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wiki", type=int, default=62_328, help="entries in wiki.mat")
    parser.add_argument("--reddit", type=int, default=10_000, help="Reddit posts")
    parser.add_argument("--flickr", type=int, default=12_000, help="Flickr photos")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--loose-ref", default=LOOSE_REF)
    parser.add_argument("--layouts", nargs="+", default=["shards", "loose"])
    parser.add_argument("--s3", action="store_true", help="also pull the raw data from moto's S3")
    parser.add_argument("--keep", type=Path, help="work here and keep it (a rerun only re-times)")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="dareg-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    sizes = overlay(work / "sizes.yaml", args.wiki, args.reddit, args.flickr)
    server, endpoint = moto(work) if args.s3 else (None, None)
    try:
        for layout in args.layouts:
            if not (work / layout / "dvc.lock").exists():
                shutil.rmtree(work / layout, ignore_errors=True)
                prepare(work / layout, layout, args.loose_ref, sizes)
        results = {layout: measure(work, layout, args, endpoint) for layout in args.layouts}
        print(f"\ncpus: {os.cpu_count()}; sizes: wiki {args.wiki}, reddit {args.reddit}, "
              f"flickr {args.flickr}; medians of {args.repeats} for status and no-op")
        names = list(results[args.layouts[0]])
        print(f"{'':38s}" + "".join(f"{layout:>12s}" for layout in args.layouts))
        for name in names:
            cells = "".join(f"{results[layout][name]:12,.2f}" if name != "raw files"
                            else f"{results[layout][name]:12,d}" for layout in args.layouts)
            print(f"{name:38s}{cells}")
        if set(args.layouts) == {"shards", "loose"}:
            for name in names[3:]:
                print(f"{name:38s} loose / shards: x{results['loose'][name] / results['shards'][name]:.1f}")
    finally:
        if server:
            server.terminate()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
