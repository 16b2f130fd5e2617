"""Download layer: md5 verification, quarantine of bad files, atomic extraction. No network."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from pathlib import Path
from urllib.error import URLError

import pytest

from scl.data.download import Resource, download_file, ensure_extracted, ensure_file, extract_archive
from scl.data.errors import ArchiveError, ChecksumError, DataError




def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def make_tgz(path: Path, top: str, files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def test_download_file_url_verifies_md5(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"hello world" * 100)
    dest = tmp_path / "raw" / "file.bin"
    out = download_file([src.as_uri()], dest, md5(src.read_bytes()))
    assert out == dest and dest.read_bytes() == src.read_bytes()
    assert [p.name for p in dest.parent.iterdir()] == ["file.bin"]  # no temp file left


def test_checksum_mismatch_names_file_and_fix_and_leaves_nothing_under_final_name(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"not the upstream content")
    dest = tmp_path / "raw" / "cifar-10-python.tar.gz"
    expected = "c58f30108f718f92721af3b95e74349a"
    with pytest.raises(ChecksumError) as e:
        download_file([src.as_uri()], dest, expected)
    msg = str(e.value)
    assert str(dest) in msg and expected in msg and md5(src.read_bytes()) in msg
    assert "delete" in msg and "by hand" in msg
    assert not dest.exists()  # never taken as good later
    assert (dest.parent / "cifar-10-python.tar.gz.bad").exists()
    assert not list(dest.parent.glob(".*part"))


def test_existing_corrupt_file_is_moved_aside(tmp_path):
    dest = tmp_path / "stl10_binary.tar.gz"
    dest.write_bytes(b"truncated")
    res = Resource(dest.name, ("http://example.invalid/x",), "91f7769df0f17e558f3565bffb0c7dfb")
    with pytest.raises(ChecksumError, match="stl10_binary.tar.gz"):
        ensure_file(res, tmp_path, download=False)
    assert not dest.exists() and (tmp_path / "stl10_binary.tar.gz.bad").exists()


def test_injected_fetch_is_used_and_not_repeated(tmp_path):
    calls = []

    def fetch(url: str, dest: Path) -> None:
        calls.append(url)
        dest.write_bytes(b"abc")

    res = Resource("a.bin", ("http://mirror1.invalid/a.bin",), md5(b"abc"))
    assert ensure_file(res, tmp_path, fetch=fetch).read_bytes() == b"abc"
    ensure_file(res, tmp_path, fetch=fetch)  # present and verified: no second download
    assert calls == ["http://mirror1.invalid/a.bin"]


def test_falls_back_to_next_mirror_then_reports_all_failures(tmp_path):
    def fetch(url: str, dest: Path) -> None:
        if "bad" in url:
            raise URLError("no route to host")
        dest.write_bytes(b"abc")

    dest = download_file(["http://bad.invalid/a", "http://good.invalid/a"], tmp_path / "a", md5(b"abc"), fetch)
    assert dest.read_bytes() == b"abc"
    with pytest.raises(DataError, match="place it at"):
        download_file(["http://bad.invalid/b"], tmp_path / "b", None, fetch)
    assert not (tmp_path / "b").exists()


def test_no_download_names_url_and_path(tmp_path):
    res = Resource("x.tar.gz", ("http://example.invalid/x.tar.gz",), None)
    with pytest.raises(DataError) as e:
        ensure_file(res, tmp_path, download=False)
    assert "http://example.invalid/x.tar.gz" in str(e.value) and str(tmp_path / "x.tar.gz") in str(e.value)


def test_extract_tar_and_zip_atomically(tmp_path):
    make_tgz(tmp_path / "a.tar.gz", "top", {"f.txt": b"1", "sub/g.txt": b"2"})
    folder = extract_archive(tmp_path / "a.tar.gz", tmp_path / "raw", "top")
    assert (folder / "sub" / "g.txt").read_bytes() == b"2"
    with zipfile.ZipFile(tmp_path / "b.zip", "w") as z:
        z.writestr("ztop/h.txt", b"3")
    assert (extract_archive(tmp_path / "b.zip", tmp_path / "raw", "ztop") / "h.txt").read_bytes() == b"3"
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["top", "ztop"]  # no temp folders left


def test_truncated_archive_error_and_no_partial_folder(tmp_path):
    data = make_tgz(tmp_path / "full.tar.gz", "top", {"big.bin": bytes(range(256)) * 4000})
    archive = tmp_path / "cut.tar.gz"
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArchiveError) as e:
        extract_archive(archive, tmp_path / "raw", "top")
    assert str(archive) in str(e.value) and "truncated or corrupt" in str(e.value)
    assert not (tmp_path / "raw" / "top").exists()
    assert list((tmp_path / "raw").iterdir()) == []  # temp extraction folder removed
    assert not archive.exists() and (tmp_path / "cut.tar.gz.bad").exists()


def test_archive_without_expected_folder(tmp_path):
    make_tgz(tmp_path / "a.tar.gz", "other", {"f": b"1"})
    with pytest.raises(ArchiveError, match="does not contain the folder top/"):
        extract_archive(tmp_path / "a.tar.gz", tmp_path / "raw", "top")


def test_ensure_extracted_downloads_verifies_extracts_then_reuses(tmp_path):
    src = tmp_path / "up" / "pkg.tar.gz"
    src.parent.mkdir()
    data = make_tgz(src, "pkg", {"x": b"payload"})
    res = Resource("pkg.tar.gz", (src.as_uri(),), md5(data), "pkg")
    raw = tmp_path / "raw"
    folder = ensure_extracted(res, raw)
    assert (folder / "x").read_bytes() == b"payload" and (raw / "pkg.tar.gz").exists()
    src.unlink()
    (raw / "pkg.tar.gz").unlink()
    assert ensure_extracted(res, raw, download=False) == folder  # extracted folder reused
