"""Shared pieces of the downloaders: resumable pooch downloads, safe extraction, atomic staging.

Introduced in notebook 00_setup_and_data.

* `fetch` downloads with pooch into a cache folder (default ``~/.cache/farnet-lite``): a sha256 is checked
  when known, a tqdm bar shows progress, an interrupted transfer resumes from its ``.part`` file (HTTP Range),
  and a file that fails its checksum is deleted, never left in the cache.
* `safe_extract` unpacks a zip or tar archive, refusing absolute paths, ``..`` components, links that point
  outside the destination, and device files; it extracts into a temporary folder next to the destination and
  renames it into place only when complete.
* `extract_any` also handles RAR (and anything else) through an external program: bsdtar, 7z or unrar.
* `staging` builds a whole dataset folder the same way: nothing half-written is ever left at ``dest``.
"""
from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Iterator, Optional, Union
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

import pooch
from tqdm.auto import tqdm

PathLike = Union[str, Path]
USER_AGENT = "farnet-lite-downloader (+https://github.com/JuvenileInWind/FARNet reproduction)"
EXTRACTORS = ("bsdtar", "7z", "7za", "7zz", "unrar")
INSTALL_EXTRACTOR = ("install one and rerun: Debian/Ubuntu `sudo apt-get install libarchive-tools` (bsdtar) "
                     "or `sudo apt-get install p7zip-full`; macOS `brew install libarchive` or "
                     "`brew install sevenzip`; conda `conda install -c conda-forge libarchive`")


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


def default_cache_dir() -> Path:
    """Where downloaded archives are kept: ``$FARNET_CACHE`` or pooch's OS cache (``~/.cache/farnet-lite``)."""
    return Path(os.environ.get("FARNET_CACHE") or pooch.os_cache("farnet-lite"))


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

    Introduced in notebook 00_setup_and_data. A cached file whose sha256 matches is reused without downloading. On a
    checksum mismatch the download is deleted and DownloadError raised. With ``sha256=None`` pooch logs the
    hash of what it downloaded, so it can be pinned later.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    # fname may hold sub-folders; create them here because pooch's own makedirs is not safe for parallel fetches.
    (cache / fname).parent.mkdir(parents=True, exist_ok=True)
    downloader = ResumableDownloader(cache / f"{fname}.part", progress=progress)
    known_hash = f"sha256:{sha256.lower()}" if sha256 else None
    try:
        return Path(pooch.retrieve(url, known_hash=known_hash, fname=fname, path=cache, downloader=downloader))
    except ValueError as err:
        if "hash" not in str(err).lower():
            raise
        got = re.search(r"but got (\w+)", str(err))
        raise DownloadError(f"Checksum mismatch for {url} (expected sha256 {sha256}, got "
                            f"{got.group(1) if got else 'another value'}); the corrupt download was deleted: "
                            f"rerun to retry, or pass --sha256 with the new value if the file legitimately "
                            f"changed.") from err


# ----------------------------------------------------------------------------- safe extraction

def check_member_name(name: str) -> PurePosixPath:
    """The relative path of an archive member, or UnsafeArchiveError if it could escape the destination.

    Introduced in notebook 00_setup_and_data.
    """
    clean = name.replace("\\", "/")
    path = PurePosixPath(clean)
    if clean.startswith("/") or re.match(r"^[A-Za-z]:", clean) or ".." in path.parts:
        raise UnsafeArchiveError(f"Refusing archive member {name!r}: absolute paths and '..' components "
                                 f"could write outside the destination; the archive is corrupt or malicious.")
    return path


def _check_link(member: str, target: str, relative_to_member: bool) -> None:
    """A (sym/hard) link stays inside the destination when its target, resolved, has no leading ``..``."""
    base = PurePosixPath(member.replace("\\", "/")).parent if relative_to_member else PurePosixPath("")
    resolved = os.path.normpath(str(base / target.replace("\\", "/")))
    if target.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", target) or resolved.split(os.sep)[0] == "..":
        raise UnsafeArchiveError(f"Refusing link {member!r} -> {target!r}: it points outside the "
                                 f"destination; the archive is corrupt or malicious.")


def _check_zip(archive: zipfile.ZipFile) -> None:
    for info in archive.infolist():
        check_member_name(info.filename)
        if stat.S_ISLNK(info.external_attr >> 16):
            _check_link(info.filename, archive.read(info).decode("utf-8", "replace"), True)


def _check_tar(archive: tarfile.TarFile) -> None:
    for member in archive.getmembers():
        check_member_name(member.name)
        if member.issym():
            _check_link(member.name, member.linkname, True)
        elif member.islnk():
            _check_link(member.name, member.linkname, False)
        elif not (member.isfile() or member.isdir()):
            raise UnsafeArchiveError(f"Refusing special archive member {member.name!r} (device or fifo).")


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

    Introduced in notebook 00_setup_and_data. `dest` must not exist yet (or be an empty folder) unless `replace`, in
    which case the old folder is swapped out only once the new one is complete.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        yield tmp
        _place(tmp, dest, replace)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def safe_extract(archive: PathLike, dest: PathLike) -> Path:
    """Extract a zip or tar(.gz/.bz2/.xz) archive into `dest` safely and atomically; returns `dest`.

    Introduced in notebook 00_setup_and_data. Every member is checked first (UnsafeArchiveError names the bad one);
    nothing is written at `dest` unless the whole archive extracted.
    """
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise DownloadError(f"Archive {archive} does not exist; check the path given to --archive.")
    with staging(dest) as tmp:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                _check_zip(zf)
                zf.extractall(tmp)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                _check_tar(tf)
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(tmp, filter="data")
                else:  # Python < 3.11.4: members were checked above
                    tf.extractall(tmp)
        else:
            raise DownloadError(f"{archive} is neither a zip nor a tar archive (corrupt, or an HTML error page "
                                f"saved instead of the data); delete it and download it again.")
    return dest


def find_extractor() -> Optional[tuple[str, str]]:
    """(name, path) of the first external archive program found (bsdtar, 7z, 7za, 7zz, unrar), else None.

    Introduced in notebook 00_setup_and_data.
    """
    for name in EXTRACTORS:
        path = shutil.which(name)
        if path:
            return name, path
    return None


def _tool_list(name: str, exe: str, archive: Path) -> list[str]:
    if name == "bsdtar":
        out = subprocess.run([exe, "-tf", str(archive)], capture_output=True, text=True, check=True).stdout
        return [line for line in out.splitlines() if line]
    if name == "unrar":
        out = subprocess.run([exe, "lb", str(archive)], capture_output=True, text=True, check=True).stdout
        return [line for line in out.splitlines() if line]
    out = subprocess.run([exe, "l", "-ba", "-slt", str(archive)], capture_output=True, text=True,
                         check=True).stdout  # 7z family
    return [line[len("Path = "):] for line in out.splitlines() if line.startswith("Path = ")]


def _tool_extract(name: str, exe: str, archive: Path, dest: Path) -> None:
    if name == "bsdtar":
        command = [exe, "-xf", str(archive), "-C", str(dest)]
    elif name == "unrar":
        command = [exe, "x", "-y", "-idq", str(archive), str(dest) + os.sep]
    else:
        command = [exe, "x", "-y", f"-o{dest}", str(archive)]
    subprocess.run(command, capture_output=True, check=True)


def extract_with_tool(archive: PathLike, dest: PathLike) -> Path:
    """Extract any archive type (RAR in particular) with bsdtar / 7z / unrar, safely and atomically.

    Introduced in notebook 00_setup_and_data. The member list is checked before extraction; afterwards every extracted
    symlink is checked too. Raises DownloadError with the install command when no program is found.
    """
    archive, dest = Path(archive), Path(dest)
    tool = find_extractor()
    if tool is None:
        raise DownloadError(f"No program to extract {archive.name} was found (looked for "
                            f"{', '.join(EXTRACTORS)}); {INSTALL_EXTRACTOR}.")
    name, exe = tool
    try:
        for member in _tool_list(name, exe, archive):
            check_member_name(member)
        with staging(dest) as tmp:
            _tool_extract(name, exe, archive, tmp)
            root = tmp.resolve()
            for path in tmp.rglob("*"):
                if path.is_symlink() and root not in path.resolve().parents:
                    raise UnsafeArchiveError(f"Refusing link {path.relative_to(tmp)} in {archive.name}: it "
                                             f"points outside the destination.")
    except subprocess.CalledProcessError as err:
        message = (err.stderr or b"")
        message = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
        raise DownloadError(f"{name} could not extract {archive} ({message.strip()[:200] or err}); the archive "
                            f"is corrupt or incomplete: delete it and download it again.") from err
    return dest


def extract_any(archive: PathLike, dest: PathLike) -> Path:
    """`safe_extract` for zip/tar archives (in Python), `extract_with_tool` for anything else (e.g. RAR).

    Introduced in notebook 00_setup_and_data.
    """
    archive = Path(archive)
    if zipfile.is_zipfile(archive) or tarfile.is_tarfile(archive):
        return safe_extract(archive, dest)
    return extract_with_tool(archive, dest)


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
    parser.add_argument("--cache", default=None, help="download cache folder (default ~/.cache/farnet-lite)")
    parser.add_argument("--force", action="store_true", help="replace an existing --dest")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def run_cli(function, args) -> int:
    """Run a downloader; a DownloadError becomes one line on stderr and exit status 1 (no traceback)."""
    import sys

    try:
        function(args)
    except DownloadError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
