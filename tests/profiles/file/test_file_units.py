"""Unit tests: virtual path safety and the upload state machine (no network)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from igrs.constants import FILE_CHECKSUM_MISMATCH, FILE_PATH_REFUSED, ReturnCode
from igrs.profiles.file import paths
from igrs.profiles.file.paths import PARTIAL_DIR, PathRefused
from igrs.profiles.file.server import parse_share_spec, parse_size
from igrs.profiles.file.transfer import COMMITTED, FAILED, TransferError, Upload, expire_partials, partials


# --- paths -------------------------------------------------------------------------------------
@pytest.mark.parametrize("path,parts", [
    ("/", []), ("", []), ("/a/b", ["a", "b"]), ("a//b/", ["a", "b"]), ("/客厅/照片.jpg", ["客厅", "照片.jpg"]),
    ("/a/..b/c..", ["a", "..b", "c.."]), ("/a/.hidden", ["a", ".hidden"]),
])
def test_split_accepts(path: str, parts: list[str]) -> None:
    assert paths.split(path) == parts


@pytest.mark.parametrize("path", [
    "/a/../b", "..", "/a/./b", "/a\x00b", "/a\\b", "/a/\x1fb", "/" + "x" * 256, "/a" * 2100,
    f"/share/{PARTIAL_DIR}/x", "/a/\ud800",
])
def test_split_refuses(path: str) -> None:
    with pytest.raises(PathRefused) as err:
        paths.split(path)
    assert err.value.return_code == FILE_PATH_REFUSED


def test_resolve_follows_inside_symlinks_and_refuses_escapes(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "d").mkdir(parents=True)
    outside.mkdir()
    (root / "in").symlink_to(root / "d")
    (root / "out").symlink_to(outside)
    (root / "d" / "up").symlink_to("../../outside")
    (root / "loop").symlink_to(root / "loop")
    r = paths.resolve(root, "s", ["in", "new.txt"])
    assert r.real == (root / "d" / "new.txt").resolve() and r.virtual == "/s/in/new.txt"
    assert paths.resolve(root, "s", []).is_root
    for rel in (["out"], ["out", "x"], ["d", "up", "x"]):
        with pytest.raises(PathRefused):
            paths.resolve(root, "s", rel)
    (root / "sneak").symlink_to(root / PARTIAL_DIR)
    with pytest.raises(PathRefused):
        paths.resolve(root, "s", ["sneak", "x.part"])
    with pytest.raises(PathRefused):  # a symlink loop
        paths.resolve(root, "s", ["loop", "x"])
    with pytest.raises(PathRefused):
        paths.resolve(root, "s", ["loop"])


def test_within_is_not_a_string_prefix_test() -> None:
    assert paths.within("/srv/a", "/srv/a/x") and paths.within("/srv/a", "/srv/a")
    assert not paths.within("/srv/a", "/srv/ab")


def test_share_specs(tmp_path: Path) -> None:
    (tmp_path / "music").mkdir()
    s = parse_share_spec(f"{tmp_path / 'music'}:rw")
    assert (s.name, s.writable, s.access("x")) == ("music", True, "rw")
    s = parse_share_spec(f"tunes={tmp_path / 'music'}")
    assert (s.name, s.writable, s.access("x")) == ("tunes", False, "ro")
    with pytest.raises(ValueError):
        parse_share_spec(str(tmp_path / "missing"))
    s = parse_share_spec(f"inbox={tmp_path / 'music'}:rw:quota=20G")
    assert (s.name, s.writable, s.quota) == ("inbox", True, 20 << 30)
    s = parse_share_spec(f"{tmp_path / 'music'}:quota=512K:rw")
    assert (s.name, s.writable, s.quota) == ("music", True, 512 << 10)
    assert parse_share_spec(f"{tmp_path / 'music'}:quota=1048576").quota == 1 << 20
    with pytest.raises(ValueError, match="not a size"):
        parse_share_spec(f"{tmp_path / 'music'}:quota=lots")


@pytest.mark.parametrize(("text", "size"), [("0", 0), ("1000", 1000), ("1K", 1024), ("1.5M", 3 << 19),
                                            ("2GiB", 2 << 30), ("1tb", 1 << 40), ("7 K", 7168)])
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


# --- the upload state machine ------------------------------------------------------------------
def _open(root: Path, data: bytes, path: str = "/s/f.bin") -> Upload:
    return Upload.open(root, "s", path, "peer-a", len(data), hashlib.sha256(data).hexdigest())


def test_upload_happy_path_is_atomic(tmp_path: Path) -> None:
    data = os.urandom(300_000)
    final = tmp_path / "f.bin"
    up = _open(tmp_path, data)
    up.write(data[:100_000])
    assert not final.exists() and up.part.stat().st_size == 100_000
    with pytest.raises(TransferError) as err:
        up.finish(final, overwrite=False)
    assert err.value.return_code == ReturnCode.PRECONDITION_FAILED
    up.write(data[100_000:])
    assert up.complete
    assert up.finish(final, overwrite=False) == hashlib.sha256(data).hexdigest()
    assert final.read_bytes() == data and up.state == COMMITTED
    assert not up.part.exists() and not up.meta.exists()
    with pytest.raises(TransferError):
        up.write(b"more")


def test_upload_resumes_from_disk_after_a_crash(tmp_path: Path) -> None:
    data = os.urandom(250_000)
    up = _open(tmp_path, data)
    up.write(data[:123_456])
    up.close()  # the process dies: only the files remain
    again = _open(tmp_path, data)
    assert again.id == up.id and again.offset == 123_456
    assert partials(tmp_path)[0]["offset"] == 123_456
    again.write(data[123_456:])
    again.finish(tmp_path / "f.bin", overwrite=False)
    assert (tmp_path / "f.bin").read_bytes() == data


def test_a_torn_tail_beyond_the_declared_size_restarts(tmp_path: Path) -> None:
    data = b"abc" * 1000
    up = _open(tmp_path, data)
    up.close()
    up.part.write_bytes(b"z" * (len(data) + 5))  # impossible length: the partial is not trusted
    assert _open(tmp_path, data).offset == 0


def test_checksum_mismatch_discards_the_partial_and_keeps_the_old_file(tmp_path: Path) -> None:
    final = tmp_path / "f.bin"
    final.write_bytes(b"precious")
    up = Upload.open(tmp_path, "s", "/s/f.bin", "peer", 4, "0" * 64)
    up.write(b"evil")
    with pytest.raises(TransferError) as err:
        up.finish(final, overwrite=True)
    assert err.value.return_code == FILE_CHECKSUM_MISMATCH
    assert up.state == FAILED and not up.part.exists() and final.read_bytes() == b"precious"


def test_no_overwrite_keeps_both_files(tmp_path: Path) -> None:
    final = tmp_path / "f.bin"
    final.write_bytes(b"old")
    up = _open(tmp_path, b"new")
    up.write(b"new")
    with pytest.raises(TransferError) as err:
        up.finish(final, overwrite=False)
    assert err.value.return_code == ReturnCode.CONFLICT
    assert final.read_bytes() == b"old" and up.part.read_bytes() == b"new"  # kept: retry with overwrite
    up.finish(final, overwrite=True)
    assert final.read_bytes() == b"new"


def test_oversize_write_and_bad_arguments(tmp_path: Path) -> None:
    up = _open(tmp_path, b"1234")
    with pytest.raises(TransferError) as err:
        up.write(b"12345")
    assert err.value.return_code == ReturnCode.PAYLOAD_TOO_LARGE and up.offset == 0
    with pytest.raises(TransferError):
        Upload.open(tmp_path, "s", "/s/x", "p", -1, "0" * 64)
    with pytest.raises(TransferError):
        Upload.open(tmp_path, "s", "/s/x", "p", 1, "XYZ")


def test_ids_separate_peers_and_contents(tmp_path: Path) -> None:
    a = Upload.open(tmp_path, "s", "/s/x", "peer-a", 1, "0" * 64)
    b = Upload.open(tmp_path, "s", "/s/x", "peer-b", 1, "0" * 64)
    c = Upload.open(tmp_path, "s", "/s/x", "peer-a", 1, "1" * 64)
    assert len({a.id, b.id, c.id}) == 3


def test_old_partials_expire(tmp_path: Path) -> None:
    up = _open(tmp_path, b"data")
    up.write(b"da")
    up.close()
    assert expire_partials(tmp_path, 3600) == 0
    assert expire_partials(tmp_path, 3600, now=up.created + 7200) == 1
    assert partials(tmp_path) == []
