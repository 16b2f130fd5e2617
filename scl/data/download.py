"""Fetch, verify and extract upstream archives without ever leaving a bad file behind.

Three rules make a half-finished or corrupt download impossible to mistake for a good one:

1. A download goes to a temporary ``.<name>.*.part`` file in the same folder and is renamed
   to its final name only after its md5 matched the upstream checksum.
2. A file found under its final name (from an earlier run, or placed by hand) is checked
   again; on a mismatch it is moved aside to ``<name>.bad`` before the error is raised.
3. An archive is extracted into a temporary folder and its top folder renamed into place
   only when extraction finished, so an existing extracted folder is always complete.

The network is reached through one function, `urllib_fetch`; every entry point takes a
``fetch`` argument so tests (and offline users) can substitute their own. ``file://`` URLs
work with the default fetcher, which is what the tests use.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence
from urllib.error import URLError
from urllib.request import urlopen

from tqdm import tqdm

from scl.data.errors import ArchiveError, ChecksumError, DataError

#: Writes the bytes found at a URL to a local path (which it may create or overwrite).
Fetch = Callable[[str, Path], None]

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Resource:
    """One upstream file: where it comes from, what it must hash to, what it unpacks to."""

    filename: str  # name under raw_dir
    urls: tuple[str, ...]  # mirrors, tried in order
    md5: str | None  # upstream checksum of the file as downloaded; None = not verifiable
    extracts_to: str | None = None  # top folder inside the archive; None = not an archive
    # compare an extracted folder found on disk with the archive before anything reads it
    # (for archives of pickles, which can run code when read: CIFAR)
    verify_extracted: bool = False


def md5sum(path: str | os.PathLike) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def urllib_fetch(url: str, dest: Path, timeout: float = 60.0) -> None:
    """The default fetcher: stream `url` into `dest` with a progress bar (http(s) and file://)."""
    with urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        name = url.rstrip("/").rsplit("/", 1)[-1]  # dest is a temp name; show the upstream one
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name, disable=None) as bar:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                bar.update(len(chunk))


def _quarantine(path: Path, name: Path | None = None) -> Path:
    """Move a bad file out of the way (to <name>.bad) so no later run takes it as good."""
    name = name or path
    bad = name.with_name(name.name + ".bad")
    os.replace(path, bad)
    return bad


def verify_md5(path: Path, expected: str | None, *, source: str = "", shown_as: Path | None = None) -> None:
    """Raise ChecksumError (after moving the file to <name>.bad) unless md5(path) == expected.

    `shown_as` is the final name the file is meant to have; it differs from `path` while a
    download still sits in its temporary file.
    """
    if expected is None:
        return
    actual = md5sum(path)
    if actual == expected.lower():
        return
    name = shown_as or path
    bad = _quarantine(path, name)
    where = f" (from {source})" if source else ""
    raise ChecksumError(
        f"checksum mismatch for {name}{where}: expected md5 {expected}, got {actual}. "
        f"The bad file was moved to {bad}. Fix: delete it and rerun to download again, "
        f"or place a correct copy at {name} by hand."
    )


def download_file(
    urls: Sequence[str], dest: str | os.PathLike, md5: str | None, fetch: Fetch | None = None
) -> Path:
    """Download the first working mirror to `dest` (via a temp file), verifying its md5.

    An existing `dest` is verified instead of downloaded again.
    """
    dest = Path(dest)
    if dest.exists():
        verify_md5(dest, md5, shown_as=dest)
        return dest
    # Looked up at call time so tests can replace the module's fetcher.
    fetch = fetch or urllib_fetch
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        errors: list[str] = []
        for url in urls:
            try:
                fetch(url, tmp)
            except (URLError, OSError, ValueError) as e:  # unreachable host, 404, bad URL ...
                errors.append(f"{url}: {e}")
                continue
            verify_md5(tmp, md5, source=url, shown_as=dest)  # moves tmp aside on mismatch
            os.replace(tmp, dest)
            return dest
        tried = "; ".join(errors) or "no URL known"
        raise DataError(
            f"could not download {dest.name} ({tried}). Fix: check the network connection and rerun, "
            f"or download it by hand from {urls[0] if urls else 'its upstream site'} and place it at {dest}."
        )
    finally:
        tmp.unlink(missing_ok=True)  # gone already after a rename or a quarantine


def ensure_file(resource: Resource, raw_dir: str | os.PathLike, download: bool = True,
                fetch: Fetch | None = None) -> Path:
    """`raw_dir/<filename>`, verified; downloaded first when absent and `download` is on."""
    path = Path(raw_dir) / resource.filename
    if not path.exists() and not download:
        url = resource.urls[0] if resource.urls else "its upstream site"
        raise DataError(
            f"{path} does not exist and downloading is switched off (--no-download). Fix: rerun without "
            f"--no-download, or download {url} by hand and place it at {path}."
        )
    return download_file(resource.urls, path, resource.md5, fetch)


# Corrupt or truncated archives surface as any of these, depending on the layer that notices.
_ARCHIVE_ERRORS = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error)


def extract_archive(archive: str | os.PathLike, dest_dir: str | os.PathLike, top: str, *,
                    md5: str | None = None) -> Path:
    """Extract a .tar(.gz) or .zip whose content lies under `top/` to `dest_dir/top`, atomically.

    Extraction happens in a temporary sibling folder; `top` is renamed into place only once
    everything was written. A corrupt archive is moved to <name>.bad and an ArchiveError raised.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    final = dest_dir / top
    if final.is_dir():
        return final
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest_dir, prefix=f".{top}.", suffix=".extract"))
    try:
        try:
            if zipfile.is_zipfile(archive):
                with zipfile.ZipFile(archive) as z:
                    z.extractall(tmp)  # zipfile strips absolute paths and '..'; CRCs checked on read
            else:
                with tarfile.open(archive, "r:*") as t:
                    t.extractall(tmp, filter="data")  # refuses links/paths escaping tmp
        except _ARCHIVE_ERRORS as e:
            bad = _quarantine(archive)
            expect = f" (expected md5 {md5})" if md5 else ""
            raise ArchiveError(
                f"archive {archive} is truncated or corrupt ({type(e).__name__}: {e}). It was moved to {bad}. "
                f"Fix: delete it and rerun to download it again, or place a complete copy{expect} at {archive} by hand."
            ) from e
        src = tmp / top
        if not src.is_dir():
            found = sorted(p.name for p in tmp.iterdir())[:5]
            raise ArchiveError(
                f"archive {archive} does not contain the folder {top}/ (found {found}). Fix: it is not the "
                f"expected upstream file; delete it and rerun, or place the right file there by hand."
            )
        os.replace(src, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _hash_stream(f) -> tuple[int, str]:
    h, size = hashlib.sha256(), 0
    while chunk := f.read(_CHUNK):
        h.update(chunk)
        size += len(chunk)
    return size, h.hexdigest()


def _archive_members(archive: Path, top: str):
    """(path relative to top, open binary stream) of every regular file under top/ in the archive."""
    prefix = top.rstrip("/") + "/"
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                if not info.is_dir() and info.filename.startswith(prefix):
                    with z.open(info) as f:
                        yield info.filename[len(prefix):], f
    else:
        with tarfile.open(archive, "r:*") as t:
            for m in t:
                if m.isfile() and m.name.startswith(prefix):
                    with t.extractfile(m) as f:
                        yield m.name[len(prefix):], f


def extracted_differences(archive: str | os.PathLike, folder: str | os.PathLike, top: str) -> list[str]:
    """How the extracted `folder` differs from `top/` inside `archive` ([] = identical files).

    Every file is compared by size and sha256 with the archive member of the same name;
    files the archive does not have count too.
    """
    folder = Path(folder)
    problems, seen = [], set()
    try:
        for rel, stream in _archive_members(Path(archive), top):
            seen.add(rel)
            path = folder / rel
            if not path.is_file():
                problems.append(f"{rel} is missing")
                continue
            with open(path, "rb") as f:
                if _hash_stream(f) != _hash_stream(stream):
                    problems.append(f"{rel} differs from the archive")
    except _ARCHIVE_ERRORS as e:
        raise ArchiveError(f"archive {archive} is truncated or corrupt ({type(e).__name__}: {e}). Fix: delete it "
                           "and rerun to download it again") from e
    extra = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()
                   and str(p.relative_to(folder)) not in seen)
    problems += [f"{rel} is not in the archive" for rel in extra]
    return problems


def ensure_extracted(resource: Resource, raw_dir: str | os.PathLike, download: bool = True,
                     fetch: Fetch | None = None) -> Path:
    """The extracted top folder of an archive resource: reused if present, else fetched + extracted.

    A present folder is complete because `extract_archive` only ever renames complete ones
    into place. Where `resource.verify_extracted` is set (archives of pickles), a present
    folder is also compared file by file with the md5-verified archive before anyone reads
    it; one that differs (or cannot be checked) is moved aside to <folder>.bad and extracted
    again, so a crafted or edited file is never unpickled.
    """
    assert resource.extracts_to, f"{resource.filename} is not an archive"
    folder = Path(raw_dir) / resource.extracts_to
    if folder.is_dir() and not resource.verify_extracted:
        return folder
    if folder.is_dir():
        try:
            archive = ensure_file(resource, raw_dir, download, fetch)
        except DataError as e:
            raise DataError(f"{folder} cannot be checked against its archive, and its files are pickles, which "
                            f"can run code when read, so it is not read unchecked: {e}") from e
        problems = extracted_differences(archive, folder, resource.extracts_to)
        if not problems:
            return folder
        bad = folder.with_name(folder.name + ".bad")
        shutil.rmtree(bad, ignore_errors=True)
        os.replace(folder, bad)
        import warnings

        warnings.warn(f"{folder} did not match {archive} ({'; '.join(problems[:3])}"
                      f"{'; ...' if len(problems) > 3 else ''}); it was moved to {bad} and is extracted again",
                      stacklevel=2)
    archive = ensure_file(resource, raw_dir, download, fetch)
    return extract_archive(archive, raw_dir, resource.extracts_to, md5=resource.md5)
