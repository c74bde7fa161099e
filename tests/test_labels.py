"""Label normalization: age / divisor, log upvotes with negatives clipped, Khosla's log views/day."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dareg import labels
from dareg.errors import DataError
from dareg.params import AgeLabels, PopularityLabels


def in_shards(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows as the raw tables give them: each image's shard, offset and size beside its sha256."""
    return frame.assign(shard="shards/wiki-000000.tar", offset=512, size=100)


def test_age_labels_divide_and_group_by_person():
    female = in_shards(pd.DataFrame({"path": ["01/a.jpg"], "sha256": ["a1"], "age": [30],
                                     "name": ["Zoë"]}))
    male = in_shards(pd.DataFrame({"path": ["02/b.jpg", "03/c.jpg"], "sha256": ["b2", "c3"],
                                   "age": [101, 0], "name": ["Al", "Al"]}))
    table = labels.age_labels(female, male, Path("data/raw/wiki"), AgeLabels(divisor=101))
    assert table["domain"].tolist() == ["source", "target", "target"]
    assert table["image"].tolist()[0] == "data/raw/wiki/01/a.jpg"
    assert table["shard"].tolist()[0] == "data/raw/wiki/shards/wiki-000000.tar"
    assert table["offset"].tolist() == [512, 512, 512] and table["size"].tolist() == [100] * 3
    assert table["label"].tolist() == pytest.approx([30 / 101, 1.0, 0.0])
    assert table["group"].tolist() == ["person:Zoë", "person:Al", "person:Al"]
    assert table["sha256"].tolist() == ["a1", "b2", "c3"]  # carried for the image cache's deps


def test_imdb_faces_group_by_celebrity_id_not_by_name():
    """imdb.mat has celeb_id: two people who share a name stay two groups; one person, one group."""
    female = in_shards(pd.DataFrame({"path": ["01/a.jpg", "02/b.jpg", "03/c.jpg"],
                                     "sha256": ["a", "b", "c"], "age": [30, 31, 40],
                                     "name": ["Kim Lee", "Kim Lee", "Kim Lee"], "celeb_id": [7, 7, 9]}))
    table = labels.age_labels(female, female.iloc[:0], Path("data/raw/wiki"), AgeLabels(divisor=101))
    assert table["group"].tolist() == ["celeb:7", "celeb:7", "celeb:9"]


def test_reddit_negative_scores_are_clipped():
    scores = pd.Series([-5, 0, 9])
    assert labels.reddit_label(scores, "log1p").tolist() == pytest.approx([0, 0, np.log(10)])
    assert labels.reddit_label(scores, "log2p1").tolist() == pytest.approx([0, 0, np.log2(10)])


def test_flickr_khosla_uses_days_to_the_scrape_time():
    photos = pd.DataFrame({"views": [300, 0, 50], "date_upload": [0, 0, 1000],
                           "scraped_at": ["1970-01-04T00:00:00Z"] * 2 + ["1970-01-01T01:00:00Z"]})
    # 3 days online -> log2(300/3 + 1); 0 views -> 0; uploaded an hour before -> at least one day
    assert labels.flickr_label(photos, "khosla").tolist() == pytest.approx(
        [np.log2(101), 0.0, np.log2(51)])
    assert labels.flickr_label(photos, "log1p").tolist() == pytest.approx(np.log1p([300, 0, 50]))


def test_popularity_labels_group_by_post_and_owner():
    posts = in_shards(pd.DataFrame({"id": ["p1", "p2"], "score": [10, 3], "file": ["p1.jpg", "p2.jpg"],
                                    "sha256": ["h1", "h2"]}))
    photos = in_shards(pd.DataFrame({"id": ["f1", "f2"], "owner": ["o@N1", "o@N1"], "views": [10, 20],
                                     "date_upload": [0, 0], "scraped_at": ["1970-01-11T00:00:00Z"] * 2,
                                     "file": ["f1.jpg", "f2.jpg"], "sha256": ["h3", "h4"]}))
    table = labels.popularity_labels(posts, photos, Path("r"), Path("f"),
                                     PopularityLabels("log1p", "khosla"))
    assert table["group"].tolist() == ["post:p1", "post:p2", "owner:o@N1", "owner:o@N1"]
    assert table["image"].tolist() == ["r/p1.jpg", "r/p2.jpg", "f/f1.jpg", "f/f2.jpg"]
    assert table["shard"].tolist() == ["r/shards/wiki-000000.tar"] * 2 + ["f/shards/wiki-000000.tar"] * 2
    assert table["sha256"].tolist() == ["h1", "h2", "h3", "h4"]


def test_missing_column_names_file_and_column():
    posts = pd.DataFrame({"id": ["p1"], "file": ["x.jpg"]})
    photos = pd.DataFrame({"id": [], "owner": [], "views": [], "date_upload": [], "scraped_at": [], "file": []})
    with pytest.raises(DataError, match="posts.csv: column 'score' missing"):
        labels.popularity_labels(posts, photos, Path("r"), Path("f"), PopularityLabels("log1p", "khosla"))
