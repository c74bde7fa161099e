"""Team workflow: clone A pushes the pipeline's outputs; a fresh git clone B pulls them and
`dvc repro` recomputes nothing. Against a local folder remote and against S3 (moto's server)."""
from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest

from committed import GIT, committed_copy
from conftest import BIN, run

pytestmark = pytest.mark.pipeline


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture()
def s3_endpoint(monkeypatch, tmp_path):
    """moto in server mode on a loopback port, with one bucket; dummy keys in the environment."""
    pytest.importorskip("dvc_s3", reason="pip install -e '.[test]' (dvc-s3)")
    import boto3
    port = free_port()
    log = (tmp_path / "moto.log").open("w")
    server = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=log, stderr=subprocess.STDOUT)
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while not listening(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="dareg")
        yield endpoint
    finally:
        server.terminate()
        server.wait(10)
        log.close()


def push_then_pull(a: Path, b: Path, configure: list[list[str]]) -> subprocess.CompletedProcess:
    """Configure the remote in A (committed) and push; clone B, pull, and return B's `dvc repro`."""
    for args in configure:
        run(args, a)
    run([*GIT, "commit", "-qam", "team remote"], a)
    assert "pushed" in run(["dvc", "push"], a).stdout
    run(["git", "clone", "-q", str(a), str(b)], a.parent)
    assert not (b / "data").exists() and not (b / "models").exists()  # nothing but git in B
    run(["dvc", "pull"], b)
    return run(["dvc", "repro"], b)


def assert_up_to_date(b: Path, repro: subprocess.CompletedProcess) -> None:
    assert "Running stage" not in repro.stdout, repro.stdout
    assert "Data and pipelines are up to date" in repro.stdout, repro.stdout
    assert (b / "models" / "age" / "da" / "seed-0.pt").exists() and (b / "data" / "cache" / "age").is_dir()
    for source in ("wiki", "reddit", "flickr"):  # the raw images arrived as tar shards
        raw = b / "data" / "raw" / source
        assert (raw / "shards" / "index.csv").is_file() and not list(raw.rglob("*.jpg"))
        assert len(list((raw / "shards").glob("*.tar"))) >= 1
    status = run(["dvc", "status", "-c"], b).stdout
    assert "in sync" in status, status


def test_local_folder_remote(pipeline, tmp_path):
    """The committed default remote, pointed at a folder by an absolute path."""
    a = committed_copy(pipeline, tmp_path / "a")
    remote = tmp_path / "remote"
    repro = push_then_pull(a, tmp_path / "b", [["dvc", "remote", "modify", "team", "url", str(remote)]])
    assert any(remote.rglob("*")), "the push wrote nothing to the remote folder"
    assert_up_to_date(tmp_path / "b", repro)


def test_s3_remote(pipeline, tmp_path, s3_endpoint):
    """S3 through dvc-s3; the keys come from the environment and never reach .dvc/config."""
    a = committed_copy(pipeline, tmp_path / "a")
    configure = [["dvc", "remote", "add", "-d", "s3", "s3://dareg/cache"],
                 ["dvc", "remote", "modify", "s3", "endpointurl", s3_endpoint]]
    repro = push_then_pull(a, tmp_path / "b", configure)
    assert_up_to_date(tmp_path / "b", repro)
    assert "testing" not in (a / ".dvc" / "config").read_text()
