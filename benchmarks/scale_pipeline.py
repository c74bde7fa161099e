"""Benchmark: the real pipeline with datasets of the real sizes in place, in both raw layouts in
the same run: tar shards (this tree) and loose files (the last commit before shards, --loose-ref).
For each: `dvc status` and a no-op `dvc repro` (medians of --repeats), and in rounds that
alternate the layouts (medians of --transfer-repeats) `dvc push` to an empty folder remote,
`dvc pull` into a fresh clone (everything: raw data, caches, models) and a `dvc pull` of the raw
data alone into another fresh clone (the part that differs between the layouts); with --s3, a
`dvc pull` of the raw data from moto's S3 server through dvc-s3. The load average before and
after is printed: on a shared machine the short shard-layout commands stretch the most. Sizes:
62,328 Wikipedia entries (about 60,000 crops), 10,000 Reddit posts and 12,000 Flickr photos,
from the offline demo generators.

    python benchmarks/scale_pipeline.py --s3        # about 20 minutes on 2 cores
    python benchmarks/scale_pipeline.py --keep /tmp/scale    # keeps the copies: a rerun only re-times
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

from demo_repro import ROOT, copy_project, env, run_sampled  # noqa: E402  (benchmarks/ on sys.path)

LOOSE_REF = "4ab56bc"  # the last commit whose raw folders hold loose image files
GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@dareg.invalid"]
RAW_STAGES = ["fetch_wiki", "scrape_reddit", "scrape_flickr"]  # the stages whose outputs are data/raw


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
    # each tree's own code checks its own params.yaml (the loose tree's schema is older)
    subprocess.run([sys.executable, "-m", "dareg.profile", str(sizes)], cwd=repo, check=True,
                   env={**env(), "PYTHONPATH": str(repo / "src")}, stdout=subprocess.DEVNULL)
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


def measure_local(work: Path, layout: str, repeats: int) -> dict:
    """Raw file count; `dvc status` and a no-op `dvc repro`, medians of `repeats`."""
    repo = work / layout
    py = {"PYTHONPATH": str(repo / "src")}
    return {"raw files": sum(1 for p in (repo / "data" / "raw").rglob("*") if p.is_file()),
            "dvc status": statistics.median(timed(repo, ["dvc", "status"], repeats, py)),
            "dvc repro (no-op)": statistics.median(timed(repo, ["dvc", "repro"], repeats, py))}


def measure_transfers(work: Path, layout: str) -> dict:
    """One round: push to an empty folder remote, then pull everything, and the raw data
    alone, each into a fresh clone."""
    repo, remote = work / layout, work / f"remote-{layout}"
    shutil.rmtree(remote, ignore_errors=True)
    sh(["dvc", "remote", "add", "-f", "bench", str(remote)], repo)
    out = {"dvc push (folder)": run_sampled(["dvc", "push", "-r", "bench"], repo)[0]}
    clone = fresh_clone(repo, work / f"clone-{layout}", "bench", str(remote))
    out["dvc pull (folder, fresh clone)"] = run_sampled(["dvc", "pull", "-r", "bench"], clone)[0]
    raw_clone = fresh_clone(repo, work / f"raw-clone-{layout}", "bench", str(remote))
    out["dvc pull of the raw data (folder, fresh clone)"] = run_sampled(
        ["dvc", "pull", "-r", "bench", *RAW_STAGES], raw_clone)[0]
    return out


def measure_s3(work: Path, layout: str, endpoint: str) -> dict:
    """Push the raw data to moto's S3 and time its pull into a fresh clone."""
    repo = work / layout
    sh(["dvc", "remote", "add", "-f", "s3", f"s3://dareg/{layout}"], repo)
    sh(["dvc", "remote", "modify", "s3", "endpointurl", endpoint], repo)
    run_sampled(["dvc", "push", "-r", "s3", *RAW_STAGES], repo)
    s3_clone = fresh_clone(repo, work / f"s3-clone-{layout}", "s3", f"s3://dareg/{layout}")
    sh(["dvc", "remote", "modify", "s3", "endpointurl", endpoint], s3_clone)
    return {"dvc pull of the raw data (moto S3)":
            run_sampled(["dvc", "pull", "-r", "s3", *RAW_STAGES], s3_clone)[0]}


def fresh_clone(repo: Path, clone: Path, remote: str, url: str) -> Path:
    """A new `git clone` of `repo` (replacing an earlier one: --keep reruns) with `remote` at `url`."""
    shutil.rmtree(clone, ignore_errors=True)
    sh(["git", "clone", "-q", str(repo), str(clone)], clone.parent)
    sh(["dvc", "remote", "add", "-f", remote, url], clone)
    return clone


def report(args, results: dict, rounds: dict, load_before: tuple) -> None:
    print(f"\ncpus: {os.cpu_count()}; sizes: wiki {args.wiki}, reddit {args.reddit}, flickr "
          f"{args.flickr}; medians of {args.repeats} for status and no-op, of "
          f"{args.transfer_repeats} for push and pulls; load average (1, 5, 15 min) before "
          f"{', '.join(f'{x:.2f}' for x in load_before)}, after "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    names = list(results[args.layouts[0]])
    print(f"{'':48s}" + "".join(f"{layout:>12s}" for layout in args.layouts))
    for name in names:
        cells = "".join(f"{results[layout][name]:12,.2f}" if name != "raw files"
                        else f"{results[layout][name]:12,d}" for layout in args.layouts)
        print(f"{name:48s}{cells}")
    for layout in args.layouts:
        for name in rounds[layout][0]:
            times = ", ".join(f"{r[name]:.2f}" for r in rounds[layout])
            print(f"{layout:>6s} {name:41s} rounds: {times}")
    if set(args.layouts) == {"shards", "loose"}:
        for name in names[3:]:
            print(f"{name:48s} loose / shards: x{results['loose'][name] / results['shards'][name]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wiki", type=int, default=62_328, help="entries in wiki.mat")
    parser.add_argument("--reddit", type=int, default=10_000, help="Reddit posts")
    parser.add_argument("--flickr", type=int, default=12_000, help="Flickr photos")
    parser.add_argument("--repeats", type=int, default=5, help="runs of status and no-op repro")
    parser.add_argument("--transfer-repeats", type=int, default=3,
                        help="rounds of push and pulls, the layouts alternating (medians)")
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
        load_before = os.getloadavg()
        results = {layout: measure_local(work, layout, args.repeats) for layout in args.layouts}
        rounds = {layout: [] for layout in args.layouts}
        for _ in range(args.transfer_repeats):  # alternating, so a burst of load elsewhere hits both
            for layout in args.layouts:
                rounds[layout].append(measure_transfers(work, layout))
        for layout in args.layouts:
            results[layout].update({name: statistics.median(r[name] for r in rounds[layout])
                                    for name in rounds[layout][0]})
            if endpoint:
                results[layout].update(measure_s3(work, layout, endpoint))
        report(args, results, rounds, load_before)
    finally:
        if server:
            server.terminate()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
