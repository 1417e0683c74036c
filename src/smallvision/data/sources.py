"""Put a data source's images under the raw folder: download, verify, extract, copy or generate.

`fetch_source` accepts an http(s) URL, a `file://` URL, a local folder, a local
.zip/.tar/.tar.gz/.tgz (also .tar.bz2/.tar.xz) archive, or "synthetic". Whatever the
source, the raw folder is built in a hidden sibling folder and renamed into place only
when complete, so a killed run never leaves a raw folder that looks finished.

- Downloads (`smallvision.data.download`) go to `<raw_dir.parent>/downloads/`, resume, and are verified.
- A local archive is read in place (never copied) and extracted safely (`smallvision.data.archives`); a local
  folder is *copied* (symlinks inside it are copied as symlinks, never followed), so the source is never modified
  and later stages cannot modify it through the raw folder. FIFOs, sockets and devices inside it are not copied
  but listed with the reason (`smallvision.data.skipped`); as the source itself they are refused at once.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from tqdm.auto import tqdm

from smallvision.data.archives import extract_archive
from smallvision.data.download import download, verify_file
from smallvision.data.skipped import Skipped, write_skipped
from smallvision.errors import DataError
from smallvision.files import check_output_folder, special_file_kind, staging_dir
from smallvision.schema import Synthetic

_HTTP_SCHEMES = ("http", "https")


def fetch_source(
    source: str,
    raw_dir: Path,
    *,
    sha256: str | None,
    size: int | None,
    connect_timeout_s: float,
    max_extract_bytes: float,
    max_tar_header_bytes: float,
    max_download_bytes: float,
    min_download_rate: tuple[float, float] | None,
    synthetic: Synthetic | None,
    retries: int,
    download_dir: Path | None = None,
    progress: bool = True,
) -> Path:
    """Leave the images of `source` under `raw_dir` (replacing it) and return `raw_dir`.

    `sha256`/`size` verify a downloaded or local archive. `connect_timeout_s` bounds the
    connection and every read of a download; `retries` is how many times an interrupted
    transfer is resumed within this call; `max_extract_bytes` and `max_tar_header_bytes` bound what an archive
    declares in all and in one extended header; `max_download_bytes` caps a transfer when `size` is not given;
    `min_download_rate` (bytes per second, window in seconds; None: no floor) cuts off a transfer slower than that.
    `synthetic` is what `smallvision.data.synthetic.generate` makes when `source == "synthetic"` (the values: the
    data settings, checked by `smallvision.schema.Data`).
    """
    raw_dir = Path(raw_dir)
    source = str(source).strip()
    if source == "synthetic":
        if synthetic is None:  # the schema refuses data.source=synthetic without data.synthetic
            raise ValueError("source 'synthetic' needs the synthetic settings")
        _generate_synthetic(raw_dir, synthetic)
        return raw_dir

    def extract(archive: Path) -> Path:
        extract_archive(
            archive,
            raw_dir,
            max_extract_bytes=max_extract_bytes,
            max_header_bytes=max_tar_header_bytes,
            progress=progress,
        )
        return raw_dir

    scheme = urlparse(source).scheme.lower()
    if scheme in _HTTP_SCHEMES:
        download_dir = Path(download_dir) if download_dir is not None else raw_dir.parent / "downloads"
        _refuse_inside(download_dir, raw_dir, what="the download folder")
        check_output_folder(raw_dir, "download", "paths.raw")
        return extract(
            download(
                source,
                download_dir,
                sha256=sha256,
                size=size,
                timeout_s=connect_timeout_s,
                retries=retries,
                progress=progress,
                max_bytes=max_download_bytes,
                min_rate=min_download_rate,
            )
        )

    path = _existing_source(source, scheme)
    _refuse_inside(path, raw_dir, what="the data source")
    check_output_folder(raw_dir, "download", "paths.raw")
    if path.is_dir():
        copy_folder(path, raw_dir, progress=progress)
        return raw_dir
    verify_file(path, sha256=sha256, size=size)
    return extract(path)


# --------------------------------------------------------------------------- folders


def copy_folder(source: Path, raw_dir: Path, *, progress: bool = True) -> None:
    """Copy a folder of images into `raw_dir`. Symlinks are copied as links (split judges them), never followed;
    FIFOs, sockets and devices are not copied (reading one could block or never end) but listed with the reason."""
    source = Path(source)
    try:
        count = sum(len(files) for _, _, files in os.walk(source))
    except RecursionError:  # os.walk and shutil.copytree recurse once per folder level
        raise DataError(
            f"data source '{source}' is nested too deeply to copy (folders inside folders past Python's recursion "
            "limit): give a flatter folder"
        ) from None
    skipped: list[Skipped] = []

    def special_files(folder: str, names: list[str]) -> set[str]:
        left_out = set()
        for name in names:
            mode = os.lstat(os.path.join(folder, name)).st_mode
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
                rel = Path(folder, name).relative_to(source).as_posix()
                skipped.append(Skipped(rel, f"not copied: {special_file_kind(Path(folder, name))}"))
                left_out.add(name)
        return left_out

    with (
        staging_dir(raw_dir, "download") as tmp,
        tqdm(total=count, desc="copy", unit="file", disable=not progress) as bar,
    ):

        def copy(src: str, dst: str) -> None:
            shutil.copy2(src, dst)
            bar.update()

        shutil.copytree(source, tmp, symlinks=True, copy_function=copy, ignore=special_files, dirs_exist_ok=True)
        write_skipped(tmp, skipped)


def _generate_synthetic(raw_dir: Path, synthetic: Synthetic) -> None:
    from smallvision.data.synthetic import generate

    with staging_dir(raw_dir, "download") as tmp:
        generate(
            tmp,
            classes=synthetic.classes,
            per_class=synthetic.per_class,
            image_size=synthetic.image_size,
            seed=synthetic.seed,
        )


def _existing_source(source: str, scheme: str) -> Path:
    """The folder or archive file a local source (a path or a file:// URL) names."""
    path = _local_path(source, scheme)
    if not path.exists():
        raise DataError(
            f"data source {source!r} does not exist; set data.source to an existing folder or archive, "
            "e.g. data=folder data.source=/path/to/kagglecatsanddogs_5340.zip"
        )
    kind = special_file_kind(path)
    if kind:
        raise DataError(
            f"data source {source!r} is {kind}: only a folder or an archive file can be a source; "
            "set data.source to one of those"
        )
    return path


def _local_path(source: str, scheme: str) -> Path:
    if scheme == "file":
        parsed = urlparse(source)
        return Path(url2pathname(unquote(parsed.path)))
    if len(scheme) > 1:  # one letter is a Windows drive
        raise DataError(
            f"data.source {source!r}: unsupported URL scheme {scheme!r}; use http(s)://, file:// or a local path"
        )
    return Path(source).expanduser()


def _refuse_inside(path: Path, raw_dir: Path, *, what: str) -> None:
    """The raw folder is replaced wholesale, so nothing it must keep may live inside it (and vice versa for copies)."""
    inner, raw = Path(path).resolve(), Path(raw_dir).resolve()
    if inner == raw or raw in inner.parents:
        raise DataError(
            f"{what} {path} is inside the raw folder {raw_dir}, which download replaces; move it or change paths.raw"
        )
    if inner.is_dir() and inner in raw.parents:
        raise DataError(
            f"the raw folder {raw_dir} is inside {what} {path}; it would copy into itself, change paths.raw"
        )
