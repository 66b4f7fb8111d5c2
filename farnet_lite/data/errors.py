"""What the data layer raises: ``DatasetError``, and the readers' shared ``on_error="raise" | "skip"`` handling.

Every module of ``farnet_lite.data`` imports this one and it imports
none of them, so image decoding (``imageio``) and the sample types (``sample``) can both raise the same error.
"""
from __future__ import annotations

import warnings


class DatasetError(ValueError):
    """A dataset file or folder that cannot be read; the message names the file and the fix."""


def check_on_error(on_error: str) -> None:
    """Refuse an ``on_error`` other than "raise" or "skip"."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}.")


def warn_skipped(name: str, skipped: dict) -> None:
    """One warning for all entries left out with on_error="skip"."""
    first_id, reason = next(iter(skipped.items()))
    warnings.warn(f"{name}: skipped {len(skipped)} unreadable entr{'y' if len(skipped) == 1 else 'ies'} "
                  f"(first: {first_id}: {reason})", stacklevel=3)


def handle_error(on_error: str, skipped: dict, image_id: str, message: str) -> None:
    """Raise DatasetError(message), or record it in `skipped` when on_error == "skip" (used by readers)."""
    check_on_error(on_error)
    if on_error == "raise":
        raise DatasetError(message)
    skipped[image_id] = message
