"""Archives extracted into the raw folder: hostile entries, bombs and corrupt archives are refused and write nothing."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest
from helpers.sources import DATA, everything_under, fetch

from smallvision.data.archives import extract_archive
from smallvision.errors import DataError
from smallvision.files import OUTPUT_MARKER


def test_an_archive_is_extracted_entry_for_entry_and_refused_whole_above_the_limit(tmp_path, image_zip):
    with zipfile.ZipFile(image_zip) as zf:
        entries = {name: zf.read(name) for name in zf.namelist() if not name.endswith("/")}
    raw = tmp_path / "raw"
    extract_archive(
        image_zip,
        raw,
        max_extract_bytes=DATA["max_extract_bytes"],
        max_header_bytes=DATA["max_tar_header_bytes"],
        progress=False,
    )
    written = {p.relative_to(raw).as_posix(): p.read_bytes() for p in raw.rglob("*") if p.is_file()}
    assert written == {**entries, OUTPUT_MARKER: b"download\n"}  # and the stage's mark on its folder
    other = tmp_path / "other"
    with pytest.raises(DataError, match="archive bomb"):
        extract_archive(
            image_zip,
            other,
            max_extract_bytes=sum(map(len, entries.values())) - 1,
            max_header_bytes=1e6,
            progress=False,
        )
    assert not other.exists()


def zip_with(path: Path, entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ok/fine.txt", b"harmless")
        for info, data in entries:
            zf.writestr(info, data)
    return path


def tar_with(path: Path, members: list[tarfile.TarInfo]) -> Path:
    with tarfile.open(path, "w") as tf:
        ok = tarfile.TarInfo("ok/fine.txt")
        ok.size = 8
        tf.addfile(ok, io.BytesIO(b"harmless"))
        for member in members:
            tf.addfile(member, io.BytesIO(b"x" * member.size) if member.isfile() else None)
    return path


def symlink_info(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


def zip_symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def device_info() -> tarfile.TarInfo:
    info = tarfile.TarInfo("dev/null_copy")
    info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
    return info


def hardlink_info() -> tarfile.TarInfo:
    info = tarfile.TarInfo("ok/passwd")
    info.type, info.linkname = tarfile.LNKTYPE, "/etc/passwd"
    return info


HOSTILE = {
    "zip ../ entry": (lambda p: zip_with(p / "a.zip", [("../escaped.txt", b"evil")]), r"'\.\.'"),
    "zip nested ../": (lambda p: zip_with(p / "a.zip", [("ok/../../escaped.txt", b"evil")]), r"'\.\.'"),
    "zip absolute path": (lambda p: zip_with(p / "a.zip", [(str(p / "escaped.txt"), b"evil")]), "absolute path"),
    "zip symlink": (lambda p: zip_with(p / "a.zip", [(zip_symlink("ok/link"), b"/etc/passwd")]), "link entry"),
    "tar ../ entry": (lambda p: tar_with(p / "a.tar", [tarfile.TarInfo("../escaped.txt")]), r"'\.\.'"),
    "tar absolute path": (lambda p: tar_with(p / "a.tar", [tarfile.TarInfo(str(p / "escaped.txt"))]), "absolute path"),
    "tar symlink outside": (
        lambda p: tar_with(p / "a.tar", [symlink_info("ok/link", "../../escaped.txt")]),
        "link entry",
    ),
    "tar hard link": (lambda p: tar_with(p / "a.tar", [hardlink_info()]), "link entry"),
    "tar device file": (lambda p: tar_with(p / "a.tar", [device_info()]), "device or special file"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_is_refused_and_writes_nothing(tmp_path, case):
    make, message = HOSTILE[case]
    work = tmp_path / "work"
    work.mkdir()
    archive = make(tmp_path)
    before = everything_under(tmp_path)
    with pytest.raises(DataError, match=message):
        fetch(archive, work / "data" / "raw")
    after = everything_under(tmp_path)
    assert after - before <= {"work/data"}  # at most the (empty) parent of the raw folder
    assert not any((work / "data").iterdir())
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path.parent / "escaped.txt").exists()


def bomb(path: Path, sizes: list[int]) -> Path:
    """A zip or gzipped tar of zero-filled entries of `sizes` bytes: tiny on disk, large once extracted."""
    if path.suffix == ".zip":
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for i, size in enumerate(sizes):
                zf.writestr(f"zeros{i}.bin", b"\0" * size)
        return path
    with tarfile.open(path, "w:gz") as tf:
        for i, size in enumerate(sizes):
            info = tarfile.TarInfo(f"PetImages/zeros{i}.bin")
            info.size = size
            tf.addfile(info, io.BytesIO(b"\0" * size))
    return path


@pytest.mark.parametrize("name", ["bomb.zip", "bomb.tar.gz", "bomb.tgz"])
@pytest.mark.parametrize("sizes", [[5_000_000], [600_000, 600_000, 3_800_000]], ids=["one entry", "the sum of entries"])
def test_archive_bomb_is_refused_by_its_declared_size(tmp_path, name, sizes):
    archive = bomb(tmp_path / name, sizes)
    assert archive.stat().st_size < 50_000  # a hundredfold expansion
    with pytest.raises(DataError, match="declares 5,000,000 bytes.*max_extract_bytes=1,000,000"):
        fetch(archive, tmp_path / "raw", max_extract_bytes=1e6)
    assert not (tmp_path / "raw").exists()
    fetch(archive, tmp_path / "raw", max_extract_bytes=5e6)  # within the limit: extracted
    assert sum(f.stat().st_size for f in (tmp_path / "raw").rglob("*.bin")) == 5_000_000


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_archive(tmp_path, image_zip, damage):
    bad = tmp_path / "bad.zip"
    data = image_zip.read_bytes()
    bad.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"PK\x03\x04" + b"\x17" * 500)
    with pytest.raises(DataError, match="not a readable zip or tar archive|corrupt"):
        fetch(bad, tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_corrupt_member_data(tmp_path, image_zip):
    data = bytearray(image_zip.read_bytes())
    data[200:260] = b"\xff" * 60  # inside the first member's compressed bytes: the CRC check fails
    bad = tmp_path / "crc.zip"
    bad.write_bytes(bytes(data))
    with pytest.raises(DataError, match="corrupt"):
        fetch(bad, tmp_path / "raw")
    assert not (tmp_path / "raw").exists()
