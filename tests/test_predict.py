"""The prediction command: checkpoint + images in, a CSV in label units out."""
import shutil

import numpy as np
import pandas as pd
import pytest

from dareg import predict, shards
from dareg.errors import DataError

from conftest import run

pytestmark = pytest.mark.pipeline


def extracted(pipeline, split_csv, out, count=None):
    """The images of a split's rows as files, taken out of their shards as a user would
    (python -m dareg.shards SHARD MEMBER OUT); in the rows' order."""
    rows = pd.read_csv(pipeline / split_csv).iloc[:count]
    files = []
    for i, row in enumerate(rows.itertuples()):
        member = row.image.split("/", 3)[-1]  # data/raw/<source>/<member>
        files.append(shards.extract_one(pipeline / row.shard, member, out / f"{i:04d}.jpg"))
    return files


def test_predictions_match_the_evaluate_stage_on_the_test_images(pipeline, tmp_path, monkeypatch):
    """Given the test split's image files, the command reproduces evaluate's predictions in years."""
    monkeypatch.chdir(pipeline)
    files = [str(f) for f in extracted(pipeline, "data/splits/age/target_test.csv", tmp_path)]
    out = tmp_path / "predictions.csv"
    predict.main(["models/age/da/seed-1.pt", *files, "--out", str(out), "--batch-size", "5"])
    table = pd.read_csv(out)
    expected = pd.read_csv(pipeline / "metrics/age/predictions/da.csv").query("seed == 1")["predicted"]
    assert table["image"].tolist() == files and set(table["unit"]) == {"years"}
    np.testing.assert_allclose(table["predicted"], expected, atol=2e-3)


def test_a_folder_yields_its_images_only_sorted(pipeline, tmp_path):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    sources = extracted(pipeline, "data/splits/popularity/target_test.csv", tmp_path, 2)
    shutil.copy(sources[0], folder / "b.jpg")
    shutil.copy(sources[1], folder / "sub" / "a.JPG")
    (folder / "notes.txt").write_text("not an image")
    assert predict.image_paths([folder]) == [folder / "b.jpg", folder / "sub" / "a.JPG"]
    with pytest.raises(DataError, match="no such file or folder"):
        predict.image_paths([tmp_path / "missing"])


def test_an_unreadable_image_stops_the_command_naming_it(pipeline, tmp_path):
    """Exit status 2, one line naming the broken file, and no CSV left behind."""
    good = extracted(pipeline, "data/splits/age/target_test.csv", tmp_path, 1)[0]
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(good, folder / "good.jpg")
    (folder / "broken.jpg").write_bytes(good.read_bytes()[:200])  # a truncated JPEG
    out = tmp_path / "predictions.csv"
    result = run(["python", "-m", "dareg.predict", str(pipeline / "models/age/da/seed-0.pt"), str(folder),
                  "--out", str(out)], tmp_path, check=False)
    assert result.returncode == 2
    assert "broken.jpg: unreadable image" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_a_folder_of_seeds_is_refused_naming_a_checkpoint_inside(pipeline, tmp_path):
    result = run(["python", "-m", "dareg.predict", str(pipeline / "models/age/da"),
                  str(pipeline / "data/raw/wiki"), "--out", str(tmp_path / "p.csv")], tmp_path, check=False)
    assert result.returncode == 2 and "models/age/da/seed-0.pt" in result.stderr
