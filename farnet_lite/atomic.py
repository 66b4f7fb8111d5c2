"""Safe file handling for run folders: atomic writes, a run-folder lock, a sweep of stale temporary files, and
the one-sentence message for an operating-system error.

Used by every writer of run outputs (checkpoints, CSV/JSON, overlays, prepared caches) so that a process killed at
any moment leaves either the previous file or the complete new one, never half a file. A killed writer can leave
its temporary file (``.<stem>.<pid>.tmp<suffix>``, named after the writing process); `sweep_stale_temps` removes
those of dead processes on the next start. `run_lock` keeps two runs from sharing one output folder, and
`staged_outputs` (``farnet predict``) replaces a previous result in a folder whole, never mixing two runs' files.
"""
from __future__ import annotations

import errno
import os
import re
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

PathLike = Union[str, Path]
LOCK_NAME = "run.lock"
TEMP_PATTERN = re.compile(r"^\..+\.(\d+)\.tmp[^/]*$")  # what atomic_path names its temporary files


@contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` (same suffix, so writers that infer the format from it work);
    when the block finishes it replaces ``path``; when the block raises, the temporary file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        if err.errno is None or err.filename not in (str(tmp), tmp):
            raise
        raise type(err)(err.errno, err.strerror, str(path)) from err  # name the file the user asked for
    finally:
        if tmp.exists():
            tmp.unlink()


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine (one owned by another user counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_temps(folder: PathLike) -> list:
    """Delete the temporary files that killed writers left in ``folder`` (not recursive); returns their paths.

    Only files named like `atomic_path`'s temporaries whose process id is no longer running are removed, so a
    live writer's file is never touched.
    """
    folder, removed = Path(folder), []
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        match = TEMP_PATTERN.match(path.name)
        if match and path.is_file() and int(match.group(1)) != os.getpid() and not pid_alive(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


class RunFolderLocked(RuntimeError):
    """Another live process holds the run folder's lock; the message names the folder and the fix."""


def _read_lock(lock: Path) -> tuple:
    """(pid, host) written in a lock file; (0, '') when it is empty or unreadable (a half-written lock)."""
    try:
        pid, host = (lock.read_text().split() + ["", ""])[:2]
        return int(pid), host
    except (OSError, ValueError):
        return 0, ""


def acquire_run_lock(folder: PathLike) -> Path:
    """Create ``folder/run.lock`` holding this process's id; take over a lock whose process has died.

    Raises RunFolderLocked when a live process (or one on another host, which cannot be checked) holds it.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_NAME
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            pid, host = _read_lock(lock)
            same_host = host in ("", socket.gethostname())
            if pid == os.getpid() or (same_host and not pid_alive(pid)):
                lock.unlink(missing_ok=True)  # stale: its process is gone
                continue
            raise RunFolderLocked(f"Run folder {folder} is in use by process {pid} on {host or 'this host'} "
                                  f"({lock}); wait for that run to finish or choose another --output-dir "
                                  f"(delete the lock file only if no run is active).") from None
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()} {socket.gethostname()}\n")
        return lock
    raise RunFolderLocked(f"Could not take the lock {lock}; another run keeps re-creating it: choose another "
                          f"--output-dir.")


def release_run_lock(folder: PathLike) -> None:
    """Remove ``folder/run.lock`` if this process holds it."""
    lock = Path(folder) / LOCK_NAME
    if _read_lock(lock)[0] == os.getpid():
        lock.unlink(missing_ok=True)


@contextmanager
def run_lock(folder: PathLike) -> Iterator[Path]:
    """Hold the run folder's lock for the duration of the block (see `acquire_run_lock`)."""
    lock = acquire_run_lock(folder)
    try:
        yield lock
    finally:
        release_run_lock(folder)


def _swap_in(folder: Path, stage: Path, names: Sequence[str]) -> None:
    """Replace each of ``names`` in ``folder`` by its staged version (or remove it when none was staged)."""
    for name in names:
        new, old = stage / name, folder / name
        trash = folder / f".{name}.{os.getpid()}.tmp-old"
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(trash, ignore_errors=True)
            os.replace(old, trash)          # a folder cannot be replaced by a rename: move the old one aside
        if new.exists():
            os.replace(new, old)
        elif old.is_file() or old.is_symlink():
            old.unlink()
        shutil.rmtree(trash, ignore_errors=True)


@contextmanager
def staged_outputs(folder: PathLike, names: Sequence[str]) -> Iterator[Path]:
    """Lock ``folder`` (`acquire_run_lock`) and yield an empty hidden folder inside it to write the outputs
    ``names`` (files or folders, e.g. ``predictions.csv`` and ``overlays``) into; when the block finishes, each
    of ``names`` in ``folder`` is replaced whole by the staged one, or removed when the block wrote none.

    So a folder never holds one run's overlays beside another's CSV, and two runs into one folder cannot mix
    (the second raises RunFolderLocked). Nothing else in ``folder`` is touched. When the block raises, ``folder``
    is left as it was (folders this call created are removed again). Staging folders of killed runs are swept.
    """
    folder = Path(folder)
    created = [p for p in (folder.absolute(), *folder.absolute().parents) if not p.exists()]
    acquire_run_lock(folder)
    stage = folder / f".staged.{os.getpid()}.tmp"
    try:
        for path in folder.iterdir():        # staging folders of dead writers
            match = TEMP_PATTERN.match(path.name)
            if match and path.is_dir() and int(match.group(1)) != os.getpid() and not pid_alive(int(match.group(1))):
                shutil.rmtree(path, ignore_errors=True)
        sweep_stale_temps(folder)
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir()
        yield stage
        _swap_in(folder, stage, names)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        release_run_lock(folder)
        for path in created:                 # deepest first; only while empty (a failed block wrote nothing)
            try:
                path.rmdir()
            except OSError:
                break


FIXES = {
    errno.EACCES: "check its permissions or choose a folder you can write to",
    errno.EPERM: "check its permissions or choose a folder you can write to",
    errno.EROFS: "the file system is read-only: choose a writable folder",
    errno.ENOSPC: "the disk is full: free some space or choose a folder on another disk",
    errno.EDQUOT: "your disk quota is exceeded: free some space or choose another folder",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
    errno.EISDIR: "it is a folder, not a file: check the path",
}


def os_error_sentence(err: OSError, fallback: Optional[PathLike] = None) -> str:
    """One sentence for an OSError: the file it concerns, what went wrong and the fix (no traceback)."""
    name = err.filename if err.filename is not None else fallback
    where = f" ({name})" if name is not None else ""
    reason = err.strerror or str(err) or type(err).__name__
    fix = FIXES.get(err.errno, "check the file and the disk, then run the command again")
    return f"{reason}{where}; {fix}."
