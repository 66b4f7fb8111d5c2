"""Safe, atomic extraction of downloaded archives (zip and tar in Python; RAR and others with bsdtar / 7z / unrar).

* `safe_extract` unpacks a zip or tar archive after checking every member's FINAL path -- its folders' links
  followed, as the OS would -- against the destination, on every Python (with or without ``tarfile.data_filter``):
  absolute paths, ``..`` components, links (or chains of links such as ``x/y -> ..``, ``x/y/z -> ..``) that leave
  the destination, and device files are refused. It extracts into a temporary folder next to the destination and
  renames it into place only when complete; a truncated or CRC-damaged archive is a one-sentence DownloadError.
* `extract_any` also handles RAR (and anything else) through an external program: bsdtar, 7z or unrar.
"""
from __future__ import annotations

import lzma
import os
import re
import shutil
import stat
import subprocess
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Optional

from farnet_lite.download._common import DownloadError, PathLike, UnsafeArchiveError, staging

EXTRACTORS = ("bsdtar", "7z", "7za", "7zz", "unrar")
INSTALL_EXTRACTOR = ("install one and rerun: Debian/Ubuntu `sudo apt-get install libarchive-tools` (bsdtar) "
                     "or `sudo apt-get install p7zip-full`; macOS `brew install libarchive` or "
                     "`brew install sevenzip`; conda `conda install -c conda-forge libarchive`")


def check_member_name(name: str) -> PurePosixPath:
    """The relative path of an archive member, or UnsafeArchiveError if it could escape the destination."""
    clean = name.replace("\\", "/")
    path = PurePosixPath(clean)
    if clean.startswith("/") or re.match(r"^[A-Za-z]:", clean) or ".." in path.parts:
        raise UnsafeArchiveError(f"Refusing archive member {name!r}: absolute paths and '..' components "
                                 f"could write outside the destination; the archive is corrupt or malicious.")
    return path


MAX_LINK_HOPS = 40  # like the OS: a longer chain of links is a loop


def _refuse_link(member: str, target: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(f"Refusing link {member!r} -> {target!r}: it points outside the destination; the "
                              f"archive is corrupt or malicious.")


def resolve_member(path: str, links: dict) -> tuple:
    """Final location of `path` below the destination once the archive's own `links` are followed.

    `links` maps a member path ('x/y') to its symlink target; each component is resolved like the OS would (a
    link's target relative to the link's folder), so a chain such as ``x/y -> ..`` then ``x/y/z -> ..`` is seen to
    leave the destination even though each name looks harmless.
    Returns the resolved parts; raises UnsafeArchiveError when they would leave the destination.
    """
    done, pending, hops = [], list(PurePosixPath(path.replace("\\", "/")).parts), 0
    while pending:
        part = pending.pop(0)
        if part in ("", ".", "/"):
            continue
        if part == "..":
            if not done:
                raise UnsafeArchiveError(f"Refusing archive member {path!r}: through its links it resolves "
                                         f"outside the destination; the archive is corrupt or malicious.")
            done.pop()
            continue
        done.append(part)
        target = links.get("/".join(done))
        if target is not None:
            hops += 1
            if target.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", target) or hops > MAX_LINK_HOPS:
                raise _refuse_link("/".join(done), target)
            done.pop()
            pending = list(PurePosixPath(target.replace("\\", "/")).parts) + pending
    return tuple(done)


def _check_members(entries: list) -> None:
    """entries: (name, kind, link target) with kind 'file', 'dir', 'sym' or 'hard', in archive order.

    Every member's final path (its folders' links followed) and every link's target must stay inside.
    """
    links: dict = {}
    for name, kind, target in entries:
        clean = str(check_member_name(name))
        resolve_member(str(PurePosixPath(clean).parent), links)  # the folder it is written into
        if kind in ("file", "dir"):
            resolve_member(clean, links)  # extraction writes through an earlier link of the same name
        elif kind == "sym":
            if target.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", target):
                raise _refuse_link(name, target)
            try:
                resolve_member(str(PurePosixPath(clean).parent / target), links)
            except UnsafeArchiveError:
                raise _refuse_link(name, target) from None
            links[clean] = target
        elif kind == "hard":
            try:
                resolve_member(str(check_member_name(target)), links)
            except UnsafeArchiveError:
                raise _refuse_link(name, target) from None


def _check_zip(archive: zipfile.ZipFile) -> None:
    entries = []
    for info in archive.infolist():
        if stat.S_ISLNK(info.external_attr >> 16):
            entries.append((info.filename, "sym", archive.read(info).decode("utf-8", "replace")))
        else:
            entries.append((info.filename, "dir" if info.is_dir() else "file", ""))
    _check_members(entries)


def _check_tar(archive: tarfile.TarFile) -> None:
    entries = []
    for member in archive.getmembers():
        if member.issym():
            entries.append((member.name, "sym", member.linkname))
        elif member.islnk():
            entries.append((member.name, "hard", member.linkname))
        elif member.isfile() or member.isdir():
            entries.append((member.name, "dir" if member.isdir() else "file", ""))
        else:
            raise UnsafeArchiveError(f"Refusing special archive member {member.name!r} (device or fifo).")
    _check_members(entries)


ZIP_MAGIC = b"PK\x03\x04"
TAR_MAGICS = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")  # gzip, bzip2, xz: compressed tars
TAR_SUFFIXES = (".tar", ".tgz", ".tbz2", ".txz", ".tar.gz", ".tar.bz2", ".tar.xz")


def archive_kind(archive: Path) -> Optional[str]:
    """'zip' or 'tar' when the file's first bytes or its name say so (even if damaged), else None (RAR, 7z, …)."""
    with open(archive, "rb") as f:
        head = f.read(8)
    name = archive.name.lower()
    if head.startswith(ZIP_MAGIC) or name.endswith(".zip") or zipfile.is_zipfile(archive):
        return "zip"
    if head.startswith(TAR_MAGICS) or name.endswith(TAR_SUFFIXES) or tarfile.is_tarfile(archive):
        return "tar"
    return None


def damaged(archive: Path, err: BaseException) -> DownloadError:
    """The one-sentence error for a truncated or CRC-damaged archive."""
    return DownloadError(f"{archive} is truncated or damaged ({err}); delete it and download it again (or "
                         f"copy it again for --archive).")


def _extract_tar(archive: Path, tmp: Path) -> None:
    with tarfile.open(archive) as tf:
        _check_tar(tf)  # every member's final path, links followed: the only guard on Python < 3.11.4
        if hasattr(tarfile, "data_filter"):
            tf.extractall(tmp, filter="data")
        else:
            tf.extractall(tmp)


def safe_extract(archive: PathLike, dest: PathLike) -> Path:
    """Extract a zip or tar(.gz/.bz2/.xz) archive into `dest` safely and atomically; returns `dest`.

    Every member is checked first (UnsafeArchiveError names the archive and the bad member); nothing is written
    at `dest` unless the whole archive extracted; a truncated or damaged archive is a DownloadError saying so.
    """
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise DownloadError(f"Archive {archive} does not exist; check the path given to --archive.")
    kind = archive_kind(archive)
    if kind is None:
        raise DownloadError(f"{archive} is neither a zip nor a tar archive (corrupt, or an HTML error page "
                            f"saved instead of the data); delete it and download it again.")
    filter_error = getattr(tarfile, "FilterError", UnsafeArchiveError)
    with staging(dest) as tmp:
        try:
            if kind == "zip":
                with zipfile.ZipFile(archive) as zf:
                    _check_zip(zf)
                    zf.extractall(tmp)
            else:
                _extract_tar(archive, tmp)
        except UnsafeArchiveError as err:
            raise UnsafeArchiveError(f"{archive}: {err}") from None    # name the archive, then the member
        except filter_error as err:  # e.g. LinkOutsideDestinationError from tarfile's data filter
            raise UnsafeArchiveError(f"Refusing {archive}: {err}; the archive is corrupt or malicious.") from err
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, lzma.LZMAError) as err:
            raise damaged(archive, err) from err
    return dest


def find_extractor() -> Optional[tuple[str, str]]:
    """(name, path) of the first external archive program found (bsdtar, 7z, 7za, 7zz, unrar), else None."""
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

    The member list is checked before extraction; afterwards every extracted symlink is checked too. Raises
    DownloadError with the install command when no program is found.
    """
    archive, dest = Path(archive), Path(dest)
    tool = find_extractor()
    if tool is None:
        raise DownloadError(f"No program to extract {archive.name} was found (looked for "
                            f"{', '.join(EXTRACTORS)}); {INSTALL_EXTRACTOR}.")
    name, exe = tool
    try:
        for member in _tool_list(name, exe, archive):
            try:
                check_member_name(member)
            except UnsafeArchiveError as err:
                raise UnsafeArchiveError(f"{archive}: {err}") from None
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
    """`safe_extract` for zip/tar archives (in Python), `extract_with_tool` for anything else (e.g. RAR)."""
    archive = Path(archive)
    if not archive.is_file():
        raise DownloadError(f"Archive {archive} does not exist; check the path given to --archive.")
    if archive_kind(archive) is not None:  # a damaged zip/tar is reported as damaged, not handed to a tool
        return safe_extract(archive, dest)
    return extract_with_tool(archive, dest)
