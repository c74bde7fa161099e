"""The Reddit scraper: real praw 8 against the loopback stand-in, and the scrape_reddit stage."""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from dareg import reddit, shards
from dareg.demo import reddit_api, social
from dareg.download import make_session
from dareg.errors import DataError
from dareg.params import Download

ROOT = Path(__file__).resolve().parents[1]
CLIENT_ID, SECRET = "test-client", "s3cret-Do-Not-Leak-42"
AGENT = "python:dareg-tests:0.1 (by /u/dareg-team)"
CONFIG = Download(workers=4, per_host=4, connect_timeout=2.0, read_timeout=5.0, retries=1,
                  backoff=0.01, max_bytes=1_000_000)
DEAD_PROXY = {name: "http://127.0.0.1:9" for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                                                      "http_proxy", "https_proxy", "all_proxy")}


@pytest.fixture(scope="module")
def demo():
    return social.reddit_demo(250, 3, ["pics", "EarthPorn"])


@pytest.fixture(scope="module")
def base_url(demo):
    with reddit_api.reddit_server(demo, CLIENT_ID, SECRET, quota=100_000) as url:
        yield url


def client(base_url, secret=SECRET):
    """A praw client on a session that records every URL it requests."""
    session = make_session(2)
    session.seen = []
    session.hooks["response"].append(lambda response, *args, **kwargs: session.seen.append(response.url))
    return reddit.connect(CLIENT_ID, secret, AGENT, base_url, session), session


def test_listing_pages_through_everything_in_score_order(demo, base_url):
    """top(limit=1000) walks the pages of 100 with `after` and returns each post once, best first."""
    praw_client, session = client(base_url)
    query = reddit.Query(["pics"], "top", "all", 1000)
    listed = [vars(s) for s in reddit.submissions(praw_client, query, CONFIG)]
    expected = sorted((p for p in demo.items if p["subreddit"] == "pics"), key=lambda p: (-p["score"], p["id"]))
    assert [p["id"] for p in listed] == [p["id"] for p in expected]
    pages = [url for url in session.seen if "/r/pics/top" in url]
    assert len(pages) == -(-len(expected) // 100) and "after=t3_" in pages[1] and "t=all" in pages[0]
    assert session.seen[0].endswith("/api/v1/access_token")


def test_limit_is_respected(base_url):
    praw_client, _ = client(base_url)
    listed = list(reddit.submissions(praw_client, reddit.Query(["EarthPorn"], "new", "all", 30), CONFIG))
    assert len(listed) == 30
    assert [s.created_utc for s in listed] == sorted((s.created_utc for s in listed), reverse=True)


def test_ids_go_through_api_info_in_batches_of_100(demo, base_url):
    """250 ids plus 2 unknown ones: three /api/info/ requests, unknown ids counted as missing."""
    praw_client, session = client(base_url)
    ids = [p["id"] for p in demo.items] + ["zzzzzz", "zzzzzy"]
    rows, skipped, listed = reddit.image_posts(reddit.submissions(praw_client, reddit.Query([], "top", "all", 0, ids), CONFIG))
    assert listed == 250 and len(session.seen) == 1 + 3
    assert all("/api/info/" in url for url in session.seen[1:])
    assert len(rows) + sum(skipped.values()) == 250


@pytest.mark.parametrize("post, kind", [
    ({"url": "https://i.redd.it/abc.jpg"}, "image"),
    ({"url": "https://i.imgur.com/abc"}, "image"),
    ({"url": "http://example.org/photo.JPEG"}, "image"),
    ({"url": "https://www.reddit.com/gallery/abc", "is_gallery": True}, "gallery"),
    ({"url": "https://v.redd.it/abc", "is_video": True}, "video"),
    ({"url": "https://www.reddit.com/r/pics/comments/abc/", "is_self": True}, "self"),
    ({"url": "https://imgur.com/a/abc"}, "album"),
    ({"url": "https://example.org/article"}, "not_image_link"),
    ({"url": "ftp://example.org/photo.jpg"}, "not_image_link"),
])
def test_link_kind_keeps_direct_images_only(post, kind):
    assert reddit.link_kind(post) == kind


def test_scrape_writes_images_and_a_contract_table(demo, base_url, tmp_path):
    """posts.csv rows for ok images only, each naming its shard member and bytes; skips and faults counted."""
    praw_client, _ = client(base_url)
    posts, metrics = reddit.scrape(praw_client, reddit.Query(["pics", "EarthPorn"], "top", "all", 1000),
                                   tmp_path, CONFIG, tmp_path / "store")
    assert list(posts.columns) == reddit.CSV_COLUMNS
    index = shards.read_index(tmp_path).set_index("member")  # the kept images, in tar shards
    assert sorted(index.index) == sorted(posts["file"]) and not (tmp_path / "images").exists()
    for row in posts.itertuples():
        data = shards.read_member(tmp_path / row.shard, row.offset, row.size)
        assert hashlib.sha256(data).hexdigest() == row.sha256 == index.loc[row.file, "sha256"]
    assert metrics["listed"] == 250 and metrics["kept"] == len(posts)
    assert metrics["outcomes"]["not_found"] == social.REDDIT_FAULTS["missing"]
    assert metrics["outcomes"]["duplicate"] == metrics["outcomes"]["corrupt"] == 1
    assert set(metrics["skipped"]) <= {"gallery", "video", "self", "album"}
    assert posts["scraped_at"].str.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$").all()


def test_bad_secret_and_missing_token_are_refused(base_url):
    """Wrong credentials fail the token request (named fix, no secret); API calls need a bearer."""
    praw_client, _ = client(base_url, secret="wrong-secret")
    with pytest.raises(DataError, match="REDDIT_CLIENT_SECRET") as err:
        list(reddit.submissions(praw_client, reddit.Query(["pics"], "top", "all", 5), CONFIG))
    assert "wrong-secret" not in str(err.value)
    session = make_session(1)
    assert session.get(f"{base_url}/r/pics/top", timeout=5).status_code == 401
    bad = session.get(f"{base_url}/r/pics/top", headers={"Authorization": "bearer nope"}, timeout=5)
    assert bad.status_code == 401


def test_rate_limit_headers_are_sent(base_url):
    """Every API answer carries X-Ratelimit-*, which prawcore paces itself by."""
    session = make_session(1)
    token = session.post(f"{base_url}/api/v1/access_token", auth=(CLIENT_ID, SECRET),
                         data={"grant_type": "client_credentials"}, timeout=5).json()["access_token"]
    answer = session.get(f"{base_url}/r/pics/hot?limit=2", timeout=5,
                         headers={"Authorization": f"bearer {token}"})
    names = {name.lower() for name in answer.headers}
    assert {"x-ratelimit-remaining", "x-ratelimit-used", "x-ratelimit-reset"} <= names
    assert answer.json()["kind"] == "Listing" and answer.json()["data"]["dist"] == 2


def test_read_ids_names_the_file_and_the_fix(tmp_path):
    good = tmp_path / "ids.csv"
    good.write_text("id\nt3_abc123\nABC123\nxyz9\n")
    assert reddit.read_ids(good) == ["abc123", "xyz9"]
    (tmp_path / "bad.csv").write_text("post\nabc\n")
    with pytest.raises(DataError, match="bad.csv: no column 'id'"):
        reddit.read_ids(tmp_path / "bad.csv")


def run_stage(cwd: Path, out: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "stages" / "scrape_reddit.py"), "--out", str(out / "reddit"),
                           "--metrics", str(out / "scrape_reddit.json"),
                           "--store", str(out / "store")], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def api_params(tmp_path: Path, base_url: str | None) -> Path:
    """A copy of params.yaml with reddit.source: api pointing at `base_url`."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["reddit"].update(source="api", base_url=base_url)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    return tmp_path


def test_demo_stage_runs_offline_through_dead_proxies(tmp_path):
    """source: demo needs no credentials, ignores proxy variables and keeps >= 500 images."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDDIT_")} | DEAD_PROXY
    done = run_stage(ROOT, tmp_path, env)
    assert done.returncode == 0, done.stderr
    posts = pd.read_csv(tmp_path / "reddit" / "posts.csv")
    assert list(posts.columns) == reddit.CSV_COLUMNS and len(posts) >= 500
    metrics = json.loads((tmp_path / "scrape_reddit.json").read_text())
    assert metrics["kept"] == len(posts) and set(metrics["outcomes"]) >= {"ok", "duplicate", "corrupt"}


def test_api_stage_without_credentials_names_the_variable(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDDIT_")}
    done = run_stage(api_params(tmp_path, None), tmp_path, env)
    assert done.returncode == 2 and "REDDIT_CLIENT_ID" in done.stderr
    assert not (tmp_path / "reddit").exists()


def test_api_stage_never_writes_or_logs_the_secret(base_url, tmp_path):
    """source: api against the stand-in: outputs and logs hold no trace of the secret."""
    env = dict(os.environ, REDDIT_CLIENT_ID=CLIENT_ID, REDDIT_CLIENT_SECRET=SECRET)
    done = run_stage(api_params(tmp_path, base_url), tmp_path, env)
    assert done.returncode == 0, done.stderr
    written = [p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p.suffix in (".csv", ".json")]
    assert all(SECRET.encode() not in blob for blob in written)
    assert SECRET not in done.stderr + done.stdout
