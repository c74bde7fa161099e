"""Getting IMDB-WIKI's raw files: resumable download, and packing the tarball (or a folder) into
tar shards (dareg.shards), each member checked by tarfile's `data` extraction filter (PEP 706).

The only part of the wiki pipeline that touches the network.
"""
from __future__ import annotations

import ipaddress
import os
import re
import shutil
import tarfile
import tempfile
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Iterator
from urllib.parse import urlsplit

import requests

from dareg import progress, shards
from dareg.errors import DataError
from dareg.hashes import sha256_file

TIMEOUT = (10.0, 60.0)  # (connect, read) seconds
# Wikimedia (The Scream for dsprites) refuses clients that do not say who they are
# (https://meta.wikimedia.org/wiki/User-Agent_policy); the others accept it as well.
USER_AGENT = "dareg/0.1 (a DVC pipeline for image regression; python-requests)"
TOP_FOLDERS = ("wiki_crop", "imdb_crop")  # the top folder of IMDB-WIKI's tarballs


def _session(url: str) -> requests.Session:
    """A session that names dareg as its user agent and ignores the environment
    (REQUESTS_CA_BUNDLE would override `verify`).

    Proxies from the environment still apply to remote hosts (honouring NO_PROXY), never to
    loopback.
    """
    session = requests.Session()
    session.trust_env = False
    session.headers["User-Agent"] = USER_AGENT
    host = urlsplit(url).hostname or ""
    if host != "localhost" and not (_is_ip(host) and ipaddress.ip_address(host).is_loopback):
        session.proxies = requests.utils.get_environ_proxies(url)
    return session


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def download(url: str, dest: Path, *, sha256: str = "", chunk: int = 1 << 20) -> Path:
    """Download `url` to `dest`, resuming from `dest`.part; check `sha256` if given; return `dest`.

    An existing `dest` (matching `sha256`, when given) is reused. A server that ignores the Range
    request (200 instead of 206) is downloaded from the start. The file appears at `dest` only
    complete (and verified), by a rename.
    """
    dest = Path(dest)
    if dest.is_file() and (not sha256 or sha256_file(dest) == sha256.strip().lower()):
        return dest
    part = dest.with_suffix(dest.suffix + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _session(url) as session:
        try:
            _fetch_to(session, url, part, chunk)
        except requests.RequestException as err:
            raise DataError(f"{url}: download failed ({err}); check the URL and the network, then "
                            f"run again (the partial file {part} is resumed)") from None
    if sha256:
        _check_sha256(url, part, sha256)
    os.replace(part, dest)
    return dest


def _fetch_to(session: requests.Session, url: str, part: Path, chunk: int) -> None:
    """Append the missing bytes of `url` to `part`, starting over if the server cannot resume."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with session.get(url, headers=headers, stream=True, timeout=TIMEOUT) as response:
        if response.status_code == 416 and _complete(response, have):
            return
        if response.status_code == 416:  # the partial file is longer than the file: start over
            part.unlink()
            return _fetch_to(session, url, part, chunk)
        if response.status_code not in (200, 206):
            raise DataError(f"{url}: HTTP {response.status_code} {response.reason}; check the URL")
        resumed = response.status_code == 206
        if resumed and not response.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
            raise DataError(f"{url}: asked for bytes from {have}, the server sent "
                            f"{response.headers.get('Content-Range')!r}; delete {part} and retry")
        size = int(response.headers.get("Content-Length", 0)) or None
        with open(part, "ab" if resumed else "wb") as out, progress.bar(
                total=size and size + (have if resumed else 0), initial=have if resumed else 0,
                unit="B", unit_scale=True, desc=part.name.removesuffix(".part")) as bar:
            for block in response.iter_content(chunk_size=chunk):
                out.write(block)
                bar.update(len(block))


def _complete(response: requests.Response, have: int) -> bool:
    """Whether a 416 answer says the partial file already holds every byte (`bytes */<size>`)."""
    return response.headers.get("Content-Range", "") == f"bytes */{have}"


def _check_sha256(url: str, path: Path, expected: str) -> None:
    actual = sha256_file(path)
    if actual != expected.strip().lower():
        path.unlink()
        raise DataError(f"{url}: sha256 {actual} does not match the expected {expected}; the "
                        "download was deleted: run again, or correct wiki.sha256 if the file "
                        "changed")


def _temporary_name(dest: Path) -> re.Pattern:
    """The names tempfile gives the folders of `scratch(dest)`: .<name>.<8 chars>.tmp."""
    return re.compile(rf"\.{re.escape(dest.name)}\.[a-z0-9_]{{8}}\.tmp")


@contextmanager
def scratch(dest: Path) -> Iterator[Path]:
    """Yield an empty folder beside `dest` (.<name>.<8 chars>.tmp), removed afterwards; one that
    a killed run leaves behind is found by `remove_stale_temporaries(dest)`."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def _replacing(dest: Path) -> Iterator[Path]:
    """Yield an empty scratch folder beside `dest`; on success it replaces `dest` by a rename."""
    dest = Path(dest)
    with scratch(dest) as tmp:
        yield tmp
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)


def remove_stale_temporaries(dest: Path) -> list[Path]:
    """Remove what a killed run filling `dest` left beside it: the folders (and files) named as
    `scratch(dest)` names them, with the half-written shards inside; returns what it removed.

    Only for a stage's own output, before it starts: DVC runs one stage on an output at a time,
    so no live run owns these.
    """
    dest = Path(dest)
    if not dest.parent.is_dir():
        return []
    pattern = _temporary_name(dest)
    stale = sorted(p for p in dest.parent.iterdir() if pattern.fullmatch(p.name))
    for path in stale:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    return stale


def _refuse(tar_path: Path, member: str, why: str) -> DataError:
    return DataError(f"{tar_path}: member {member!r} {why}; refusing to extract an unsafe archive, "
                     "fetch it again from a trusted source")


def _top_folder(member: tarfile.TarInfo, tar_path: Path) -> str:
    """The top folder of `member` (one of TOP_FOLDERS), or "" for the archive's root itself."""
    parts = PurePosixPath(member.name).parts
    if parts and parts[0] not in TOP_FOLDERS:
        raise DataError(f"{tar_path}: member {member.name!r} is not under wiki_crop/ (or "
                        "imdb_crop/); expected IMDB-WIKI's layout (wiki_crop/wiki.mat, "
                        "wiki_crop/00/...)")
    return parts[0] if parts else ""


def _strip_top(member: tarfile.TarInfo, top: str, tar_path: Path) -> tarfile.TarInfo | None:
    """`member` renamed without the top folder `top` (a hard link's target too), as `tar -xf`
    then `mv wiki_crop/* .` would leave it; None for `top` itself. Names only: the safety
    checks are the data filter's."""
    parts = PurePosixPath(member.name).parts
    if not parts or parts[0] != top:
        raise DataError(f"{tar_path}: member {member.name!r} is not under {top}/; expected "
                        f"IMDB-WIKI's layout ({top}/wiki.mat, {top}/00/...)")
    if len(parts) == 1:
        return None
    linkname = member.linkname
    if member.islnk():  # hard links name their target from the archive's root
        target = PurePosixPath(linkname).parts
        if len(target) < 2 or target[0] != top:
            raise _refuse(tar_path, member.name, f"links to {linkname!r}, outside {top}/")
        linkname = str(PurePosixPath(*target[1:]))
    return member.replace(name=str(PurePosixPath(*parts[1:])), linkname=linkname, deep=False)


def _filtered(member: tarfile.TarInfo, top: str, dest: Path, tar_path: Path) -> tarfile.TarInfo | None:
    """`member` as an extraction into `dest` would take it: the top folder stripped, then
    tarfile's `data` filter (PEP 706), whose refusals (a name or a link leaving `dest`, an
    absolute link, a device or a fifo) become a DataError naming the member."""
    stripped = _strip_top(member, top, tar_path)
    if stripped is None:
        return None
    try:
        return tarfile.data_filter(stripped, str(dest))
    except (tarfile.AbsoluteLinkError, tarfile.LinkOutsideDestinationError):
        raise _refuse(tar_path, member.name, f"links to {member.linkname!r}, outside the target") from None
    except tarfile.SpecialFileError:
        raise _refuse(tar_path, member.name, "is a device or a fifo") from None
    except tarfile.FilterError:  # AbsolutePathError, OutsideDestinationError
        raise _refuse(tar_path, member.name, "points outside the target folder") from None


MAT_FILES = ("wiki.mat", "imdb.mat")  # kept as files beside the shards; everything else is packed


def pack_tar(tar_path: Path, dest_folder: Path, prefix: str = "wiki",
             max_bytes: int = shards.SHARD_BYTES) -> Path:
    """Stream IMDB-WIKI's tarball into `dest_folder`: wiki.mat (or imdb.mat) as a file, every
    other file as a member of tar shards (shards/<prefix>-NNNNNN.tar), named without the top
    folder (one of TOP_FOLDERS, the same for every member), as `tar -xf` would give it; no
    extracted copy of the images is made. Returns `dest_folder`.

    Each member, its top folder stripped, goes through tarfile's `data` filter as if extracted:
    names outside the top folder (absolute ones too), names or links leaving the target, absolute
    links, devices and fifos are refused (a DataError naming the member); a link inside is stored
    as a copy of its target's bytes. Packs beside `dest_folder` and renames, so a folder that
    exists is complete.
    """
    tar_path = Path(tar_path)
    try:
        with tarfile.open(tar_path) as tar, _replacing(Path(dest_folder)) as tmp, \
                shards.ShardWriter(tmp, prefix, max_bytes) as writer, \
                progress.bar(total=tar_path.stat().st_size, unit="B", unit_scale=True,
                             desc=f"pack {tar_path.name}", mininterval=1.0) as bar:
            top = ""
            for member in tar:
                top = top or _top_folder(member, tar_path)
                renamed = _filtered(member, top, tmp, tar_path) if top else None
                bar.update(tar.offset - bar.n)
                if renamed is None or renamed.isdir():
                    continue
                source = tar.extractfile(member)  # follows a link inside to its target's bytes
                if source is None:
                    raise _refuse(tar_path, member.name, "has no readable content")
                data = source.read()
                if renamed.name in MAT_FILES:
                    (tmp / renamed.name).write_bytes(data)
                else:  # the data filter lets `17/../18/x.jpg` through; a shard member must be plain
                    writer.add(shards.safe_member_name(renamed.name, str(tar_path)), data)
    except (tarfile.TarError, EOFError, KeyError) as err:
        reason = " ".join(str(err).split())  # tarfile's reasons span several lines
        raise DataError(f"{tar_path}: not a readable tar archive ({reason}); delete it and fetch "
                        "it again") from None
    return Path(dest_folder)


def pack_folder(src: Path, dest: Path, prefix: str = "wiki",
                max_bytes: int = shards.SHARD_BYTES) -> Path:
    """Give `dest` the contents of a wiki_crop folder `src`: its .mat file copied, every other
    file (sorted by path) packed into tar shards under its path relative to `src`. The user's
    folder is only read (DVC owns `dest`: it deletes and caches it)."""
    src = Path(src)
    files = sorted(p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file())
    with _replacing(Path(dest)) as tmp, shards.ShardWriter(tmp, prefix, max_bytes) as writer:
        for name in progress.bar(files, desc=f"pack {src}", unit="file", mininterval=1.0):
            if name in MAT_FILES:
                shutil.copyfile(src / name, tmp / name)
            elif PurePosixPath(name).parts[0] != shards.FOLDER:
                writer.add(name, (src / name).read_bytes())
    return Path(dest)


def check_wiki_folder(folder: Path) -> None:
    """Raise a DataError unless `folder` holds wiki.mat (or imdb.mat) at its top."""
    folder = Path(folder)
    if not any((folder / name).is_file() for name in ("wiki.mat", "imdb.mat")):
        found = sorted(p.name for p in folder.iterdir())[:5] if folder.is_dir() else []
        raise DataError(f"{folder}: no wiki.mat at the top (found {found}); expected the contents "
                        "of IMDB-WIKI's wiki_crop (wiki.mat and folders 00 to 99)")
