"""Atomic file writes: write to a temporary file beside the target, then ``os.replace`` it into place.

Used by every writer of run outputs (checkpoints, CSV/JSON, overlays, prepared caches) so that a process killed at
any moment leaves either the previous file or the complete new one, never half a file.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union


@contextmanager
def atomic_path(path: Union[str, Path]) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` (same suffix, so writers that infer the format from it work);
    when the block finishes it replaces ``path``; when the block raises, the temporary file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
