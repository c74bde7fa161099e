"""Both scrapers through the real praw and flickrapi clients while the stand-ins inject faults on demand:
every planted fault ends with its outcome, every other image arrives once, nothing is lost or twice."""
import dataclasses
import time

import pytest

from dareg import flickr, reddit, shards
from dareg.demo import faults, flickr_api, reddit_api, social
from dareg.download import make_session
from dareg.download_store import Store
from dareg.errors import DataError
from dareg.params import Download

CONFIG = Download(workers=4, per_host=4, connect_timeout=2.0, read_timeout=0.5, retries=2,
                  backoff=0.01, max_bytes=200_000)
PLANNED = {"404": "not_found", "500_once": "ok", "429_once": "ok", "slow": "ok", "stall": "timeout",
           "redirect": "ok", "oversized": "too_large"}
WINDOW = (1388534400, 1393632000)
AGENT = "python:dareg-tests:0.1 (by /u/dareg-team)"


def manifest_outcomes(store) -> dict[str, str]:
    return {key: entry["outcome"] for key, entry in Store(store).entries().items()}


def plan_for(paths: list[str], api: list[str]) -> faults.FaultPlan:
    """One planned image fault per path in IMAGE_FAULTS order; stalls outlast the read timeout."""
    return faults.FaultPlan(images=dict(zip(paths, faults.IMAGE_FAULTS)), api=api, slow_s=0.2,
                            stall_s=2.0, oversized_bytes=300_000)


def check(results_by_id: dict, planned_ids: dict, metrics: dict, frame, plan: faults.FaultPlan, folder):
    """Planted faults end as PLANNED; every good image is kept once; retried faults hit twice."""
    for item_id, fault in planned_ids.items():
        assert results_by_id[item_id] == PLANNED[fault], (item_id, fault)
    assert frame["id"].is_unique and sorted(shards.read_index(folder)["member"]) == sorted(frame["file"])
    assert metrics["outcomes"]["timeout"] == 1 and metrics["outcomes"]["too_large"] == 1
    expected = {"500_once": 2, "429_once": 2, "redirect": 2, "stall": CONFIG.retries + 1}  # else 1
    assert {path: plan.hits[path] for path in plan.images} == {
        path: expected.get(fault, 1) for path, fault in plan.images.items()}


def test_reddit_scrape_survives_every_planned_fault(tmp_path):
    demo = social.reddit_demo(60, 5, ["pics"])
    good = [p for p in demo.items if p["url"].startswith("/i/") and demo.files.get(p["url"], (0,))[0] == 200]
    chosen = good[-len(faults.IMAGE_FAULTS):]  # past the data's own planted faults
    plan = plan_for([p["url"] for p in chosen], api=["503"])  # prawcore retries a 5xx itself
    with reddit_api.reddit_server(demo, "id", "secret", quota=100_000, faults=plan) as base_url:
        client = reddit.connect("id", "secret", AGENT, base_url, make_session(2))
        query = reddit.Query(["pics"], "new", "all", 1000)
        posts, metrics = reddit.scrape(client, query, tmp_path, CONFIG, tmp_path / "store")
    planned_ids = {p["id"]: plan.images[p["url"]] for p in chosen}
    check(manifest_outcomes(tmp_path / "store"), planned_ids, metrics, posts, plan, tmp_path)


def test_flickr_scrape_retries_api_errors_and_survives_every_planned_fault(tmp_path):
    demo = social.flickr_demo(40, 6, WINDOW)
    good = [p for p in demo.items if p["url_path"] in demo.files][-len(faults.IMAGE_FAULTS):]
    plan = plan_for([p["url_path"] for p in good], api=["500", "429"])
    with flickr_api.flickr_server(demo, "key", "secret", faults=plan) as base_url:
        client = flickr.connect("key", "secret", f"{base_url}/services/rest/", make_session(2), 5.0,
                                CONFIG.retries, CONFIG.backoff)
        search = flickr.Search(WINDOW[0], WINDOW[1], "", "", "", 1, "n", 100, 1000)
        photos, metrics = flickr.scrape(client, search, tmp_path, CONFIG, 1000, tmp_path / "store")
    planned_ids = {p["id"]: plan.images[p["url_path"]] for p in good}
    check(manifest_outcomes(tmp_path / "store"), planned_ids, metrics, photos.astype({"id": str}), plan, tmp_path)
    assert plan.api == [] and metrics["listed"] == 40


def test_flickr_api_errors_beyond_the_retries_stop_with_a_clear_error(tmp_path):
    demo = social.flickr_demo(20, 6, WINDOW)
    plan = faults.FaultPlan(api=["503", "503", "503"])
    with flickr_api.flickr_server(demo, "key", "secret", faults=plan) as base_url:
        client = flickr.connect("key", "secret", f"{base_url}/services/rest/", make_session(2), 5.0,
                                retries=2, backoff=0.01)
        search = flickr.Search(WINDOW[0], WINDOW[1], "", "", "", 1, "n", 100, 1000)
        start = time.monotonic()
        with pytest.raises(DataError, match="Status code 503.*flickr.rest_url"):
            flickr.collect(client, search, flickr.Pacer(1000, retries=2, backoff=0.01))
    assert plan.api == [] and time.monotonic() - start < 2


def test_flickr_429_waits_retry_after_and_the_search_goes_on():
    """flickrapi posts through our session, which waits out a 429's Retry-After
    (1 s) and asks again (the Pacer retries nothing here); every photo is found. More 429s in a
    row than the retries stop with the status named."""
    demo = social.flickr_demo(40, 6, WINDOW)
    search = flickr.Search(WINDOW[0], WINDOW[1], "", "", "", 1, "n", 10, 1000)
    plan = faults.FaultPlan()
    with flickr_api.flickr_server(demo, "key", "secret", faults=plan) as base_url:
        client = flickr.connect("key", "secret", f"{base_url}/services/rest/", make_session(2), 5.0,
                                retries=1, backoff=0.01)
        pages = flickr.window_photos(client, search, search.min_upload, search.max_upload,
                                     flickr.Pacer(1000))
        first = [next(pages)["id"] for _ in range(10)]  # page 1 is in; the 429 hits page 2
        plan.api.append("429")
        start = time.monotonic()
        found = first + [photo["id"] for photo in pages]
        assert time.monotonic() - start >= 1.0 and plan.api == []
        assert sorted(found) == sorted(photo["id"] for photo in demo.items)
        plan.api.extend(["429", "429"])
        with pytest.raises(DataError, match="Status code 429 received"):
            flickr.collect(client, search, flickr.Pacer(1000))
    assert plan.api == []


@pytest.mark.parametrize("ids", [False, True])
def test_reddit_429_waits_retry_after_and_loses_no_place_in_the_listing(ids):
    """A 429 on a listing page or an /api/info/ batch: wait Retry-After (1 s), ask again, lose
    nothing; more 429s in a row than download.retries stop with the status named."""
    demo = social.reddit_demo(250, 5, ["pics"])
    expected = sorted(p["id"] for p in demo.items)
    query = reddit.Query(["pics"], "new", "all", 1000, expected if ids else None)
    plan = faults.FaultPlan(api=["429"])
    with reddit_api.reddit_server(demo, "id", "secret", quota=100_000, faults=plan) as base_url:
        client = reddit.connect("id", "secret", AGENT, base_url, make_session(2))
        config = dataclasses.replace(CONFIG, retries=1)
        listing = reddit.submissions(client, query, config)
        first = [next(listing).id for _ in range(3)]  # the first page is in; the 429 hits the next
        plan.api.append("429")
        start = time.monotonic()
        assert sorted(first + [s.id for s in listing]) == expected
        assert time.monotonic() - start >= 1.0 and plan.api == []
        plan.api.extend(["429"] * (config.retries + 1))
        with pytest.raises(DataError, match="HTTP 429"):
            list(reddit.submissions(client, query, config))


def test_unknown_faults_are_refused():
    with pytest.raises(ValueError, match="unknown faults"):
        faults.FaultPlan(images={"/i/x.jpg": "explode"})
