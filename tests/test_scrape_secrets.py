"""`dvc repro` of both scrape stages with source: api against the stand-ins, credentials in the
environment: no secret reaches any file of the project (params, dvc.lock, outputs, metrics, the
download store, DVC's cache and state) nor the logs."""
import subprocess
from pathlib import Path

import yaml

from conftest import copy_project, env
from dareg.demo import flickr_api, reddit_api, social

SECRETS = {"REDDIT_CLIENT_ID": "reddit-id-Zq81", "REDDIT_CLIENT_SECRET": "reddit-s3cret-Xy77Qp",
           "FLICKR_API_KEY": "feedc0ffee1234567890abcdef001122", "FLICKR_API_SECRET": "fl1ckr-s3cret-Wv55"}
WINDOW = ("2014-01-01", "2014-03-01")


def use_api(repo: Path, reddit_url: str, flickr_url: str) -> None:
    """Point the copy's params at the stand-ins with source: api."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["reddit"].update(source="api", base_url=reddit_url)
    params["flickr"].update(source="api", rest_url=f"{flickr_url}/services/rest/", calls_per_second=100.0,
                            min_upload_date=WINDOW[0], max_upload_date=WINDOW[1])
    (repo / "params.yaml").write_text(yaml.safe_dump(params))


def test_dvc_repro_of_the_scrape_stages_leaks_no_secret(tmp_path):
    repo = copy_project(tmp_path / "repo")
    reddit_demo = social.reddit_demo(40, 1, ["pics", "itookapicture", "EarthPorn"])
    flickr_demo = social.flickr_demo(40, 2, (1388534400, 1393632000))
    with reddit_api.reddit_server(reddit_demo, SECRETS["REDDIT_CLIENT_ID"], SECRETS["REDDIT_CLIENT_SECRET"],
                                  quota=100_000) as reddit_url, \
            flickr_api.flickr_server(flickr_demo, SECRETS["FLICKR_API_KEY"],
                                     SECRETS["FLICKR_API_SECRET"]) as flickr_url:
        use_api(repo, reddit_url, flickr_url)
        done = subprocess.run(["dvc", "repro", "scrape_reddit", "scrape_flickr"], cwd=repo, env=env() | SECRETS,
                              capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (repo / "data" / "downloads" / "reddit" / "manifest.jsonl").is_file()
    assert len((repo / "data" / "raw" / "flickr" / "photos.csv").read_text().splitlines()) > 30
    logs = done.stdout + done.stderr
    files = [path for path in repo.rglob("*") if path.is_file() and ".git" not in path.relative_to(repo).parts[:1]]
    assert any(path.name == "dvc.lock" for path in files) and len(files) > 60
    for name, secret in SECRETS.items():  # the ids and the key too, though only the secrets are secret
        assert secret not in logs, name
        leaks = [str(path) for path in files if secret.encode() in path.read_bytes()]
        assert not leaks, f"{name} found in {leaks}"
