"""Command-line options built from :class:`~farnet_lite.config.TrainConfig` field metadata (``farnet`` and
``farnet benchmark``): one flag per concept, its help text and choices read from the field, one default shown.
"""
from __future__ import annotations

import argparse
import typing
from typing import Optional

from farnet_lite.backbones import BACKBONES
from farnet_lite.config import TrainConfig, config_fields
from farnet_lite.systems import SYSTEMS

MODEL_NAMES = {"system": SYSTEMS, "backbone": BACKBONES}
"""The choices of the fields the config leaves to the model's modules (checked where the model is built)."""


def _bool_or_path(text: str):
    low = text.lower()
    if low in ("true", "yes", "1"):
        return True
    if low in ("false", "no", "0"):
        return False
    return text


def parse_kwargs(name: str) -> dict:
    """argparse keywords of the TrainConfig field ``name``, read from its type annotation and metadata."""
    hint = typing.get_type_hints(TrainConfig)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if hint is bool or args == [bool]:
        return dict(action=argparse.BooleanOptionalAction)
    if set(args) == {bool, str}:
        return dict(type=_bool_or_path, metavar="false|true|PATH")
    base = args[0] if len(args) == 1 else hint              # Optional[X] -> X
    if typing.get_origin(base) is tuple:
        items = typing.get_args(base)
        if items[-1] is Ellipsis:                          # Tuple[str, ...]: eval_splits -> SPLIT
            return dict(nargs="+", type=items[0], metavar=name.split("_")[-1].rstrip("s").upper())
        return dict(nargs=len(items), type=items[0], metavar=("H", "W"))   # sizes are (H, W)
    kwargs = dict(type=base)
    choices = config_fields()[name].metadata.get("choices", MODEL_NAMES.get(name))
    if choices is not None:
        kwargs["choices"] = choices
    return kwargs


def show_value(value) -> str:
    """How a default value is written in help texts: ``(800, 640)`` -> ``800 640``."""
    return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)


def add_field_option(parser, name: str, default=argparse.SUPPRESS, shown: Optional[str] = None,
                     help: Optional[str] = None) -> None:
    """``--<name>`` for the TrainConfig field ``name``: its parsing, choices and help from the field's metadata.

    ``shown`` is the default written in the help (exactly once); ``help`` replaces the field's help text where a
    command uses the concept differently (e.g. ``predict --output-dir``).
    """
    text = help or config_fields()[name].metadata["help"]
    if shown is not None:
        text = f"{text} (default: {shown})"
    parser.add_argument("--" + name.replace("_", "-"), default=default, help=text, **parse_kwargs(name))


def add_alias(parser, old: str, name: str) -> None:
    """A hidden older spelling (``--split``, ``--size``, ``--batch``) of the option ``--<name>``."""
    kwargs = parse_kwargs(name)
    kwargs.pop("metavar", None)
    parser.add_argument(old, dest=name, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)


class DefaultsFormatter(argparse.HelpFormatter):
    """Show ``(default: X)`` only where the help text does not already say what the default is."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS) or action.option_strings == []:
            return text
        return text + " (default: %(default)s)"
