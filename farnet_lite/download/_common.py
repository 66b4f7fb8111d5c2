"""Shared pieces of the downloaders: resumable pooch downloads, safe extraction, atomic staging.

* `fetch` downloads with pooch into a cache folder (default ``~/.cache/farnet_lite``): a sha256 is checked
  when known, a tqdm bar shows progress, an interrupted transfer resumes from its ``.part`` file (HTTP Range),
  and a file that fails its checksum is deleted, never left in the cache.
* extraction (zip, tar, RAR) lives in :mod:`farnet_lite.download.extract`.
* `staging` builds a whole dataset folder the same way: nothing half-written is ever left at ``dest``.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional, Union
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from tqdm.auto import tqdm

from farnet_lite.atomic import os_error_sentence

PathLike = Union[str, Path]
USER_AGENT = "farnet-lite-downloader (+https://github.com/JuvenileInWind/FARNet reproduction)"


class DownloadError(RuntimeError):
    """A download, checksum or extraction problem; the message names the file/URL and the fix."""


class UnsafeArchiveError(DownloadError):
    """An archive member that would land outside the destination (absolute path, ``..``, escaping link)."""


def refuse_synthetic_copy(folder: Path) -> None:
    """Raise when ``folder`` holds a synthetic stand-in written by :mod:`farnet_lite.data.synthetic`.

    A synthetic copy has the public layout, so without this check a downloader would take it for the real data.
    """
    if (Path(folder) / "synthetic_manifest.json").is_file():
        raise DownloadError(f"{folder} holds a synthetic copy written by farnet_lite.data.synthetic, not the real "
                            "data; choose another --dest or pass --force to replace it with the download.")


def already_installed(folder: Path, what: str, validate: Callable[[], dict], force: bool,
                      synthetic_check: Optional[Path] = None, show_counts: bool = False) -> bool:
    """True when ``folder`` already holds a valid copy of ``what`` and ``force`` is off: the downloaders then skip.

    A non-empty ``folder`` is first refused if it (or ``synthetic_check``, the folder the synthetic writer marks) is a
    synthetic stand-in, then checked with ``validate()`` (which raises on an incomplete copy and returns counts,
    shown in the message with ``show_counts``).
    """
    if force or not (folder.is_dir() and any(folder.iterdir())):
        return False
    refuse_synthetic_copy(synthetic_check if synthetic_check is not None else folder)
    counts = validate()
    shown = f" ({counts})" if show_counts else ""
    print(f"{folder} already holds {what}{shown}; nothing to do (use --force to replace it).")
    return True


def default_cache_dir() -> Path:
    """Where downloaded archives are kept: ``$FARNET_CACHE`` or pooch's OS cache (``~/.cache/farnet_lite`` on Linux)."""
    if os.environ.get("FARNET_CACHE"):
        return Path(os.environ["FARNET_CACHE"])
    import pooch  # imported here: training and prediction need this folder, not pooch (the GPU machine lacks it)

    return Path(pooch.os_cache("farnet_lite"))


# ----------------------------------------------------------------------------- downloading

class ResumableDownloader:
    """A pooch downloader (urllib, no extra dependency) that resumes from ``part_path`` with HTTP Range.

    pooch calls it with a temporary file name; the bytes are first collected in the stable ``part_path``
    so that an interrupted transfer can continue, then moved to pooch's file, which pooch hashes and renames.
    """

    def __init__(self, part_path: Path, progress: bool = True, timeout: float = 60.0):
        self.part_path = Path(part_path)
        self.progress = progress
        self.timeout = timeout

    def __call__(self, url: str, output_file, pooch_obj=None, check_only: bool = False):
        if check_only:
            return True
        start = self.part_path.stat().st_size if self.part_path.exists() else 0
        headers = {"User-Agent": USER_AGENT}
        if start:
            headers["Range"] = f"bytes={start}-"
        try:
            response = urlopen(Request(url, headers=headers), timeout=self.timeout)
        except HTTPError as err:
            if err.code == 416 and start:  # our .part is complete or stale: start over
                self.part_path.unlink()
                return self(url, output_file, pooch_obj)
            raise DownloadError(f"Could not download {url} (HTTP {err.code} {err.reason}); check the URL "
                                f"or use the manual route (--archive) described in --help.") from err
        except (URLError, OSError) as err:
            raise DownloadError(f"Could not reach {url} ({getattr(err, 'reason', err)}); check the network "
                                f"or use the manual route (--archive) described in --help.") from err
        with response:
            resumed = start > 0 and response.status == 206
            if not resumed:
                start = 0  # the server ignored Range: download everything again
            length = response.headers.get("Content-Length")
            total = start + int(length) if length is not None else None
            with open(self.part_path, "ab" if resumed else "wb") as f, \
                    tqdm(total=total, initial=start, unit="B", unit_scale=True, disable=not self.progress,
                         desc=self.part_path.name[:-len(".part")]) as bar:
                while True:
                    chunk = response.read(1 << 16)
                    if not chunk:
                        break
                    f.write(chunk)
                    bar.update(len(chunk))
        if total is not None and self.part_path.stat().st_size < total:
            raise DownloadError(f"Download of {url} stopped early; rerun the same command to resume it.")
        shutil.move(str(self.part_path), str(output_file))
        return None


def fetch(url: str, fname: str, sha256: Optional[str] = None, cache_dir: Optional[PathLike] = None,
          progress: bool = True) -> Path:
    """Download `url` to ``cache_dir/fname`` with pooch (checksum, progress bar, cache, resume).

    A cached file whose sha256 matches is reused without downloading. On a
    checksum mismatch the download is deleted and DownloadError raised. With ``sha256=None`` pooch logs the
    hash of what it downloaded, so it can be pinned later.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    # fname may hold sub-folders; create them here because pooch's own makedirs is not safe for parallel fetches.
    (cache / fname).parent.mkdir(parents=True, exist_ok=True)
    downloader = ResumableDownloader(cache / f"{fname}.part", progress=progress)
    known_hash = f"sha256:{sha256.lower()}" if sha256 else None
    try:
        import pooch  # see default_cache_dir

        return Path(pooch.retrieve(url, known_hash=known_hash, fname=fname, path=cache, downloader=downloader))
    except ValueError as err:
        if "hash" not in str(err).lower():
            raise
        got = re.search(r"but got (\w+)", str(err))
        raise DownloadError(f"Checksum mismatch for {url} (expected sha256 {sha256}, got "
                            f"{got.group(1) if got else 'another value'}); the corrupt download was deleted: "
                            f"rerun to retry, or pass --sha256 with the new value if the file legitimately "
                            f"changed.") from err


# ----------------------------------------------------------------------------- atomic staging

def _place(tmp: Path, dest: Path, replace: bool = False) -> Path:
    """Rename the finished `tmp` folder to `dest` (absent or an empty folder; with `replace`, any folder)."""
    old = None
    if dest.is_dir() and (replace or not any(dest.iterdir())):
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        os.replace(dest, old)
    if dest.exists():
        raise DownloadError(f"{dest} already exists; delete it (or pass --force) to extract again.")
    os.replace(tmp, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return dest


@contextmanager
def staging(dest: PathLike, replace: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder next to `dest`; rename it to `dest` on success, delete it on error.

    `dest` must not exist yet (or be an empty folder) unless `replace`, in
    which case the old folder is swapped out only once the new one is complete.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes 0700: the installed dataset must be readable by others, like any folder
    try:
        yield tmp
        _place(tmp, dest, replace)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def find_dir(root: PathLike, name: str) -> Optional[Path]:
    """The shallowest folder called `name` below `root` (or `root` itself), else None."""
    root = Path(root)
    if root.name == name and root.is_dir():
        return root
    found = sorted((p for p in root.rglob(name) if p.is_dir()), key=lambda p: len(p.parts))
    return found[0] if found else None


def count_files(folder: Path, suffixes: tuple) -> int:
    """Number of files in `folder` (not recursive) whose suffix is in `suffixes` (case-insensitive)."""
    if not folder.is_dir():
        return 0
    return sum(1 for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)


def make_parser(prog: str, description: str, default_dest: str, url_help: str,
                sha256: bool = True) -> "argparse.ArgumentParser":
    """The options every downloader shares: --dest, --url, --archive, --sha256, --cache, --force, --quiet."""
    import argparse

    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dest", default=default_dest, help=f"dataset folder to create (default {default_dest})")
    parser.add_argument("--url", default=None, help=url_help)
    parser.add_argument("--archive", nargs="+", default=None, metavar="PATH",
                        help="use already-downloaded archive(s) instead of downloading (manual route)")
    if sha256:
        parser.add_argument("--sha256", default=None, help="expected sha256 of the download (checked if given)")
    parser.add_argument("--cache", default=None,
                        help="download cache folder (default $FARNET_CACHE, else ~/.cache/farnet_lite)")
    parser.add_argument("--force", action="store_true", help="replace an existing --dest")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def run_cli(function, args) -> int:
    """Run a downloader; a DownloadError or OSError becomes one line on stderr and exit status 1 (no traceback)."""
    import sys

    try:
        function(args)
    except DownloadError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # read-only or full destination, unreadable --archive, ...
        print(f"error: {os_error_sentence(err, getattr(args, 'dest', None))}", file=sys.stderr)
        return 1
    return 0
