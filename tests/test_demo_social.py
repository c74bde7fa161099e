"""The synthetic Reddit and Flickr sets: deterministic, learnable, and visibly shifted between domains."""
import io

import numpy as np
import pytest
from PIL import Image

from dareg.demo import social
from dareg.errors import DataError

WINDOW = (1388534400, 1393632000)  # 2014-01-01 .. 2014-03-01


@pytest.fixture(scope="module")
def reddit():
    return social.reddit_demo(400, 5, ["pics", "EarthPorn"])


@pytest.fixture(scope="module")
def flickr():
    return social.flickr_demo(400, 6, WINDOW)


def pixels(demo: social.SocialDemo, path: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(demo.files[path].body)).convert("RGB"), dtype=float) / 255


def features(demo, paths):
    """Per image: mean saturation (the objects) and mean brightness (the background)."""
    hsv = [np.asarray(Image.open(io.BytesIO(demo.files[p].body)).convert("HSV"), dtype=float) / 255
           for p in paths]
    return np.array([[h[..., 1].mean(), h[..., 2].mean()] for h in hsv])


def spearman(a, b) -> float:
    return float(np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1])


def served_images(demo, key):
    """(path, item) of items whose image is served intact as a JPEG."""
    good = []
    for item in demo.items:
        served = demo.files.get(item[key])
        if served and served.content_type == "image/jpeg" and served.body.endswith(b"\xff\xd9"):
            good.append((item[key], item))
    return good


def test_same_seed_same_data_other_seed_other_data(reddit):
    """Rebuilding with the seed gives identical posts and bytes; another seed does not."""
    again = social.reddit_demo(400, 5, ["pics", "EarthPorn"])
    assert again.items == reddit.items and again.files == reddit.files
    assert social.reddit_demo(400, 7, ["pics", "EarthPorn"]).items != reddit.items


def test_reddit_posts_look_like_reddit(reddit):
    """Unique base-36 ids, a few non-positive scores, mostly image links plus other kinds to skip."""
    ids = [post["id"] for post in reddit.items]
    assert len(set(ids)) == len(ids) and all(i.isalnum() and i.islower() or i.isdigit() for i in ids)
    assert any(post["score"] <= 0 for post in reddit.items)
    assert {post["subreddit"] for post in reddit.items} == {"pics", "EarthPorn"}
    kinds = {("gallery" in p["url"], p["is_video"], p["is_self"]) for p in reddit.items}
    assert len(kinds) == 4


def test_faults_are_planted_for_the_downloader(reddit):
    """Some image links are missing, one is HTML, one truncated, one a byte copy of another."""
    image_posts = [p for p in reddit.items if p["url"].startswith("/i/")]
    served = [reddit.files.get(p["url"]) for p in image_posts]
    assert sum(s is None for s in served) == social.REDDIT_FAULTS["missing"]
    assert sum(s is not None and s.content_type == "text/html" for s in served) == 1
    bodies = [s.body for s in served if s is not None]
    assert len(bodies) - len(set(bodies)) == 1
    jpegs = [s.body for s in served if s is not None and s.content_type == "image/jpeg"]
    assert sum(not b.endswith(b"\xff\xd9") for b in jpegs) == 1  # truncated: no end marker


def test_too_small_a_demo_is_a_clear_error():
    with pytest.raises(DataError, match="demo_posts"):
        social.reddit_demo(5, 0, ["pics"])


def test_flickr_owners_hold_several_photos_in_the_window(flickr):
    """Photos group by owner (for owner-level splits) and were uploaded inside the window."""
    owners = [photo["owner"] for photo in flickr.items]
    assert len(owners) / len(set(owners)) >= 3
    assert all(WINDOW[0] <= photo["dateupload"] < WINDOW[1] for photo in flickr.items)
    assert all(photo["view_rate"] > 0 for photo in flickr.items)


def test_image_content_carries_the_label_with_a_domain_shifted_relation(reddit, flickr):
    """Saturation tracks Reddit score; brightness tracks Flickr views but not Reddit score."""
    reddit_good = served_images(reddit, "url")
    reddit_features = features(reddit, [path for path, _ in reddit_good])
    score = [np.log1p(max(post["score"], 0)) for _, post in reddit_good]
    flickr_good = served_images(flickr, "url_path")
    flickr_features = features(flickr, [path for path, _ in flickr_good])
    rate = [np.log(photo["view_rate"]) for _, photo in flickr_good]
    assert spearman(reddit_features[:, 0], score) > 0.4
    assert abs(spearman(reddit_features[:, 1], score)) < 0.15
    assert spearman(flickr_features[:, 1], rate) > 0.5


def test_the_two_domains_differ_in_style(reddit, flickr):
    """Reddit images are warm (red over blue), Flickr images cool (blue over red), 160x120 JPEGs."""
    reddit_paths = [path for path, _ in served_images(reddit, "url")[:50]]
    flickr_paths = [path for path, _ in served_images(flickr, "url_path")[:50]]
    reddit_mean = np.mean([pixels(reddit, p).mean(axis=(0, 1)) for p in reddit_paths], axis=0)
    flickr_mean = np.mean([pixels(flickr, p).mean(axis=(0, 1)) for p in flickr_paths], axis=0)
    assert reddit_mean[0] > reddit_mean[2] and flickr_mean[2] > flickr_mean[0]
    assert Image.open(io.BytesIO(flickr.files[flickr_paths[0]].body)).size == (social.WIDTH, social.HEIGHT)
