"""The Flickr scraper: real flickrapi 2.4.0 against the loopback stand-in, and the scrape_flickr stage."""
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import flickrapi
import pandas as pd
import pytest
import requests
import yaml

from dareg import download, flickr, shards
from dareg.demo import faults, flickr_api, social
from dareg.download import make_session
from dareg.errors import DataError
from dareg.params import Download

ROOT = Path(__file__).resolve().parents[1]
KEY, SECRET = "0123456789abcdef", "s3cret-Do-Not-Leak-43"
WINDOW = (1388534400, 1393632000)  # 2014-01-01 .. 2014-03-01
NOW = 1420070400.0                 # 2015-01-01: the stand-in's clock for views
CONFIG = Download(workers=4, per_host=4, connect_timeout=2.0, read_timeout=5.0, retries=1,
                  backoff=0.01, max_bytes=1_000_000)
DEAD_PROXY = {name: "http://127.0.0.1:9" for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                                                      "http_proxy", "https_proxy", "all_proxy")}


@pytest.fixture(scope="module")
def demo():
    return social.flickr_demo(300, 4, WINDOW)


@pytest.fixture(scope="module")
def base_url(demo):
    """The stand-in, capping each search at 60 results so that window splitting is exercised."""
    with flickr_api.flickr_server(demo, KEY, SECRET, cap=60, now=lambda: NOW) as url:
        yield url


def client(base_url, key=KEY, secret=SECRET):
    """A flickrapi client on a session that records every answer's photos header."""
    session = make_session(2)
    session.totals = []
    session.hooks["response"].append(
        lambda response, *args, **kwargs: session.totals.append(response.json().get("photos", {}).get("total")))
    return flickr.connect(key, secret, f"{base_url}/services/rest/", session, 5.0), session


def search(**changes) -> flickr.Search:
    fields = dict(min_upload=WINDOW[0], max_upload=WINDOW[1], text="", tags="", license="",
                  content_type=1, url_size="n", per_page=25, max_photos=10_000, result_cap=60)
    return flickr.Search(**(fields | changes))


def test_window_is_split_until_every_slice_fits_under_the_cap(demo, base_url):
    """300 photos behind a 60-result cap: slices are halved until each total fits; all are found."""
    flickr_client, session = client(base_url)
    rows, skipped, listed = flickr.collect(flickr_client, search(), flickr.Pacer(1000))
    assert sorted(row["id"] for row in rows) == sorted(photo["id"] for photo in demo.items)
    assert max(session.totals) == 300 and any(t <= 60 for t in session.totals)
    assert listed == len(rows) and not skipped


def test_without_splitting_the_cap_hides_photos_and_pages_repeat(base_url):
    """Believing the cap is higher walks past it: later pages repeat, deduplicated, 60 found."""
    flickr_client, _ = client(base_url)
    rows, skipped, listed = flickr.collect(flickr_client, search(result_cap=10**6), flickr.Pacer(1000))
    assert len(rows) == 60 and skipped["repeated_id"] == listed - 60 > 0


def test_rows_parse_views_and_dates_and_stop_at_max_photos(demo, base_url):
    """views = round(daily rate * days online at request time), as integers; max_photos stops early."""
    flickr_client, session = client(base_url)
    rows, _, _ = flickr.collect(flickr_client, search(max_photos=40), flickr.Pacer(1000))
    assert len(rows) == 40 and len(session.totals) < 10
    truth = {photo["id"]: photo for photo in demo.items}
    for row in rows:
        photo = truth[row["id"]]
        assert row["date_upload"] == photo["dateupload"] and row["owner"] == photo["owner"]
        assert row["views"] == round(photo["view_rate"] * (NOW - photo["dateupload"]) / 86400)


def test_scrape_writes_images_and_a_contract_table(base_url, tmp_path):
    flickr_client, _ = client(base_url)
    photos, metrics = flickr.scrape(flickr_client, search(), tmp_path, CONFIG, 1000, tmp_path / "store")
    assert list(photos.columns) == flickr.CSV_COLUMNS
    index = shards.read_index(tmp_path).set_index("member")  # the kept images, in tar shards
    assert sorted(index.index) == sorted(photos["file"]) and not (tmp_path / "images").exists()
    for row in photos.itertuples():
        data = shards.read_member(tmp_path / row.shard, row.offset, row.size)
        assert hashlib.sha256(data).hexdigest() == row.sha256 == index.loc[row.file, "sha256"]
    assert metrics["listed"] == 300 and metrics["kept"] == len(photos) == 300 - sum(social.FLICKR_FAULTS.values())


@pytest.mark.parametrize("key, secret, code, hint", [
    (KEY, "wrong-secret", "96", "FLICKR_API_SECRET"), ("wrong-key", SECRET, "100", "FLICKR_API_KEY")])
def test_bad_signature_or_key_is_refused_like_flickr(base_url, key, secret, code, hint):
    """A wrong secret breaks the OAuth signature (96), a wrong key is code 100; no secret in the error."""
    flickr_client, _ = client(base_url, key, secret)
    with pytest.raises(DataError, match=hint) as err:
        flickr.collect(flickr_client, search(), flickr.Pacer(1000))
    assert f"Error: {code}:" in str(err.value) and "wrong-secret" not in str(err.value)


def test_unsigned_calls_are_refused(base_url):
    answer = make_session(1).post(f"{base_url}/services/rest/", timeout=5, data={
        "method": "flickr.photos.search", "api_key": KEY, "format": "json", "nojsoncallback": 1}).json()
    assert answer == {"stat": "fail", "code": 96, "message": "Invalid signature"}


def test_connect_keeps_flickrapi_off_its_shared_session():
    """flickrapi's class-wide Session trusts proxy variables; ours is set on the instance only."""
    session = make_session(1)
    flickr_client = flickr.connect(KEY, SECRET, "http://127.0.0.1:9/services/rest/", session, 1.0)
    assert flickr_client.flickr_oauth.session.session is session
    assert flickrapi.auth.OAuthFlickrInterface.session is not session
    assert flickr_client.REST_URL == "http://127.0.0.1:9/services/rest/"


def test_a_retry_is_signed_anew_and_waits_retry_after_up_to_the_cap(monkeypatch):
    """A 429 and a 503 are asked again with a fresh OAuth nonce (the stand-in refuses a replayed
    one, as a strict OAuth1 server may); Retry-After is waited, capped as for images."""
    waits = []
    monkeypatch.setattr(download, "wait_to_retry", lambda after, backoff, attempt: waits.append(after))
    demo = social.flickr_demo(20, 0, WINDOW)
    plan = faults.FaultPlan(api=["429", "503"])
    with flickr_api.flickr_server(demo, KEY, SECRET, faults=plan) as base_url:
        client = flickr.connect(KEY, SECRET, f"{base_url}/services/rest/", make_session(1), 5.0,
                                retries=2, backoff=0.01)
        answer = client.photos.search(min_upload_date=WINDOW[0], max_upload_date=WINDOW[1], per_page=5)
    assert plan.api == [] and len(answer["photos"]["photo"]) == 5
    assert waits == [1.0, 0.0]  # the 429's Retry-After: 1; the 503 had none (backoff alone)


def test_retries_spent_pass_the_last_answer_to_flickrapi():
    plan = faults.FaultPlan(api=["500", "500"])
    with flickr_api.flickr_server(social.flickr_demo(20, 0, WINDOW), KEY, SECRET, faults=plan) as base_url:
        client = flickr.connect(KEY, SECRET, f"{base_url}/services/rest/", make_session(1), 5.0,
                                retries=1, backoff=0.01)
        with pytest.raises(flickrapi.FlickrError, match="Status code 500 received"):
            client.photos.search(min_upload_date=WINDOW[0], max_upload_date=WINDOW[1])
    assert plan.api == []


def test_the_stand_in_refuses_a_replayed_nonce():
    """The check above is only worth something if a resent signed request fails: it does."""
    plan = faults.FaultPlan(api=["429"])
    with flickr_api.flickr_server(social.flickr_demo(20, 0, WINDOW), KEY, SECRET, faults=plan) as base_url:
        session = make_session(1)
        client = flickr.connect(KEY, SECRET, f"{base_url}/services/rest/", session, 5.0)
        request = session.prepare_request(requests.Request(
            "POST", f"{base_url}/services/rest/", auth=client.flickr_oauth.oauth,
            data={"method": "flickr.photos.search", "format": "json", "nojsoncallback": 1}))
        assert session.send(request).status_code == 429
        replay = session.send(request)  # the same signed bytes, as urllib3's Retry would resend
        assert replay.status_code == 401 and b"nonce_used" in replay.content


def test_parse_date_accepts_flickr_formats_and_names_the_key():
    assert flickr.parse_date("2014-01-01", "k") == flickr.parse_date(1388534400, "k") == 1388534400
    assert flickr.parse_date("2014-01-01 00:00:10", "k") == 1388534410
    with pytest.raises(DataError, match="flickr.min_upload_date"):
        flickr.parse_date("Jan 2014", "flickr.min_upload_date")


def test_pacer_spaces_calls():
    pacer, start = flickr.Pacer(20.0), time.monotonic()
    for _ in range(4):
        pacer.wait()
    assert time.monotonic() - start >= 0.15


def run_stage(cwd: Path, out: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "stages" / "scrape_flickr.py"), "--out", str(out / "flickr"),
                           "--metrics", str(out / "scrape_flickr.json"),
                           "--store", str(out / "store")], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def api_params(tmp_path: Path, rest_url: str, max_photos: int = 12440) -> Path:
    """A copy of params.yaml with flickr.source: api pointing at `rest_url`."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["flickr"].update(source="api", rest_url=rest_url, max_photos=max_photos, calls_per_second=100.0)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    return tmp_path


def test_demo_stage_runs_offline_through_dead_proxies(tmp_path):
    """source: demo needs no credentials, ignores proxy variables and keeps >= 700 images."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLICKR_")} | DEAD_PROXY
    done = run_stage(ROOT, tmp_path, env)
    assert done.returncode == 0, done.stderr
    photos = pd.read_csv(tmp_path / "flickr" / "photos.csv")
    assert list(photos.columns) == flickr.CSV_COLUMNS and len(photos) >= 700
    assert photos["views"].dtype.kind == "i" and photos["date_upload"].dtype.kind == "i"
    assert json.loads((tmp_path / "scrape_flickr.json").read_text())["kept"] == len(photos)


def test_api_stage_without_credentials_names_the_variable(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLICKR_")} | {"FLICKR_API_KEY": KEY}
    done = run_stage(api_params(tmp_path, "http://127.0.0.1:9/services/rest/"), tmp_path, env)
    assert done.returncode == 2 and "FLICKR_API_SECRET" in done.stderr


def test_api_stage_never_writes_or_logs_the_secret(base_url, tmp_path):
    env = dict(os.environ, FLICKR_API_KEY=KEY, FLICKR_API_SECRET=SECRET)
    done = run_stage(api_params(tmp_path, f"{base_url}/services/rest/", max_photos=50), tmp_path, env)
    assert done.returncode == 0, done.stderr
    written = [p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p.suffix in (".csv", ".json", ".yaml")]
    assert all(SECRET.encode() not in blob for blob in written)
    assert SECRET not in done.stderr + done.stdout
    assert len(pd.read_csv(tmp_path / "flickr" / "photos.csv")) >= 45
