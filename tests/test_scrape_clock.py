"""The scrapes' clock: the demo counts to reddit.demo_now / flickr.demo_now, so reruns at any wall-clock
time write the same tables; source: api keeps the real clock."""
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from dareg import download, labels, params
from dareg.demo import flickr_api, social
from dareg.params import ParamsError

ROOT = Path(__file__).resolve().parents[1]
DEMO_NOW = "2015-01-01T00:00:00Z"
LATER = 400 * 86400  # a second run, 400 days later by the wall clock
SHIFTED_STAGE = """
import runpy, sys, time
real = time.time
time.time = lambda: real() + {offset}
sys.argv = [{stage!r}, "--out", "raw", "--metrics", "metrics.json", "--store", "store"]
runpy.run_path({stage!r}, run_name="__main__")
"""


def write_params(folder: Path, **changes) -> Path:
    """folder/params.yaml: the repository's with small demos (Reddit's top of the year, so that
    the stand-in's time filter counts too) and `changes` ({section: {key: value}})."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["reddit"].update(demo_posts=60, time_filter="year", demo_now=DEMO_NOW)
    raw["flickr"].update(demo_photos=60, demo_now=DEMO_NOW)
    for section, values in changes.items():
        raw[section].update(values)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(raw))
    return folder


def run_stage(stage: str, folder: Path, offset: float = 0.0,
              env: dict | None = None) -> subprocess.CompletedProcess:
    """Run stages/<stage>.py in `folder` with the wall clock moved by `offset` seconds."""
    code = SHIFTED_STAGE.format(offset=offset, stage=str(ROOT / "stages" / f"{stage}.py"))
    return subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True,
                          text=True, timeout=300, env=env)


@pytest.mark.parametrize("stage, table", [("scrape_reddit", "posts.csv"),
                                          ("scrape_flickr", "photos.csv")])
def test_two_demo_scrapes_400_days_apart_write_the_same_bytes(tmp_path, stage, table):
    """The same table, shards and labels byte for byte: scraped_at is demo_now, and the url
    column names the stand-in by a stable origin (its port changes each run)."""
    runs = [write_params(tmp_path / f"run{i}") for i in range(2)]
    for folder, offset in zip(runs, (0, LATER)):
        done = run_stage(stage, folder, offset)
        assert done.returncode == 0, done.stderr
    first, second = (folder / "raw" for folder in runs)
    assert (first / table).read_bytes() == (second / table).read_bytes()
    assert sorted(p.name for p in (first / "shards").iterdir()) == sorted(
        p.name for p in (second / "shards").iterdir())
    for shard in (first / "shards").iterdir():
        assert shard.read_bytes() == (second / "shards" / shard.name).read_bytes()
    rows = pd.read_csv(first / table)
    assert len(rows) > 20 and set(rows["scraped_at"]) == {DEMO_NOW}
    assert rows["url"].str.startswith(social.DEMO_ORIGIN + "/").all()
    if stage == "scrape_flickr":
        label = labels.flickr_label(rows, "khosla")
        assert (label == labels.flickr_label(pd.read_csv(second / table), "khosla")).all()
        assert (label > 0).all()


def test_api_scrape_keeps_the_real_clock(tmp_path):
    """source: api against a stand-in: scraped_at is the time of the scrape, not demo_now."""
    demo = social.flickr_demo(30, 4, (1388534400, 1393632000))
    with flickr_api.flickr_server(demo, "key", "secret") as base_url:
        folder = write_params(tmp_path, flickr={"source": "api", "calls_per_second": 100.0,
                                                "rest_url": f"{base_url}/services/rest/"})
        start = time.time()
        done = run_stage("scrape_flickr", folder,
                         env=dict(os.environ, FLICKR_API_KEY="key", FLICKR_API_SECRET="secret"))
        end = time.time()
    assert done.returncode == 0, done.stderr
    scraped = pd.to_datetime(pd.read_csv(folder / "raw" / "photos.csv")["scraped_at"], utc=True)
    assert (scraped.map(pd.Timestamp.timestamp).between(int(start), end + 1)).all()


def test_scrape_clock_is_fixed_for_the_demo_and_real_for_the_api():
    assert download.scrape_clock("demo", DEMO_NOW)() == 1420070400.0
    assert download.scrape_clock("demo", "2015-01-01T00:00:00+00:00")() == 1420070400.0
    assert download.scrape_clock("api", DEMO_NOW) is time.time


@pytest.mark.parametrize("value", ["2015-01-01T00:00:00", "2015-01-01T00:00:00+02:00", "soon", ""])
def test_a_demo_now_without_utc_is_refused_at_load_naming_the_key(value):
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["reddit"]["demo_now"] = value
    with pytest.raises(ParamsError, match=re.escape(f"reddit: demo_now: {value!r} is not an ISO 8601 "
                                                    f"UTC time; write it quoted")):
        params.parse(data)


def test_a_demo_now_before_the_upload_window_stops_the_stage_in_one_line(tmp_path):
    folder = write_params(tmp_path, flickr={"demo_now": "2014-02-01T00:00:00Z"})
    done = run_stage("scrape_flickr", folder)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "flickr.demo_now '2014-02-01T00:00:00Z' is not after flickr.max_upload_date" in done.stderr
