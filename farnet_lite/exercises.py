"""Checks for the course's exercises: what the student wrote against the package's own code, by value.

The committed notebooks hold blanks (``raise NotImplementedError``, written by ``tools/exercises.py student`` from
``notebooks/solutions/``); the cell after each blank calls one of

* :func:`check_function` -- the student's function and the package's, called with the same arguments;
* :func:`check_module` -- the student's ``nn.Module`` and the package's, with the package's weights loaded into the
  student's (so the names the student writes must be the package's names).

Both raise :class:`ExerciseNotDone` (an ``AssertionError``) with one sentence saying what differs and what to do,
and print ``✓ ...`` when everything matches. What "matches" means (``_compare``): the same structure (tensor vs
array vs number, tuple / namedtuple / dict with the same length or keys, ``None``), the same shapes, and values with
``|yours - package| <= atol + rtol * |package|`` everywhere (NaN matches NaN); on a mismatch the message names the
largest ``|difference|``, its index, both values there and how many values differ.
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Union

import numpy as np
import torch
from torch import nn

MAX_NAMES = 6   # parameter names listed in one message


class ExerciseNotDone(AssertionError):
    """An exercise's blank is still empty, or what was written does not match the package yet."""


def _suffix(hint: str) -> str:
    return f" Hint: {hint}" if hint else ""


def _qualname(obj: Any) -> str:
    """``farnet_lite.layers.UpBlock`` for a class / function / instance of one."""
    target = obj if isinstance(obj, type) or callable(obj) and not isinstance(obj, nn.Module) else type(obj)
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', repr(target))}"


def _call(fn: Callable, args: tuple, kwargs: dict, name: str, hint: str) -> Any:
    """``fn(*args, **kwargs)`` on copies of the arguments; ``NotImplementedError`` -> ExerciseNotDone (still empty)."""
    try:
        args, kwargs = copy.deepcopy((args, kwargs))   # an in-place edit by one call must not change the other's input
    except Exception:                                  # an argument that cannot be copied is passed as it is
        pass
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise ExerciseNotDone(f"{name}: the blank above is still empty: replace `raise NotImplementedError` with "
                              f"your code, run that cell, then this one again.{_suffix(hint)}") from None


def _describe(value: Any) -> str:
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return f"a {type(value).__module__.split('.')[0]}.{type(value).__name__} of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


def _as_array(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return value.numpy() if value.dtype == torch.bool else value.double().numpy()
    return np.asarray(value)


def _compare_arrays(yours: Any, ref: Any, where: str, rtol: float, atol: float) -> str:
    """'' when ``yours`` matches ``ref`` (shape, then values within rtol/atol), else what differs."""
    a, b = _as_array(yours), _as_array(ref)
    if a.shape != b.shape:
        return f"{where} has shape {tuple(a.shape)}, the package's has {tuple(b.shape)}"
    if not (np.issubdtype(b.dtype, np.number) or b.dtype == bool):
        return "" if np.array_equal(a, b) else f"{where} is {a!r}, the package's is {b!r}"
    a, b = a.astype(np.float64), b.astype(np.float64)
    close = np.isclose(a, b, rtol=rtol, atol=atol, equal_nan=True)
    if close.all():
        return ""
    diff = np.where(close, 0.0, np.nan_to_num(np.abs(a - b), nan=np.inf))   # a NaN on one side only: an inf gap
    index = np.unravel_index(int(np.argmax(diff)), diff.shape)
    at = f" at index {tuple(int(i) for i in index)}" if diff.ndim else ""
    return (f"{where} differs: max |difference| {float(diff[index]):.4g}{at} (yours {float(a[index]):.6g}, the "
            f"package's {float(b[index]):.6g}); {int((~close).sum())} of {close.size} values differ beyond "
            f"rtol={rtol:g}, atol={atol:g}")


def _compare(yours: Any, ref: Any, where: str, rtol: float, atol: float) -> str:
    """'' when ``yours`` matches ``ref`` (see the module docstring), else one clause saying where it first differs."""
    if ref is None or yours is None:
        return "" if yours is ref else (f"{where} is {_describe(yours)}, the package's is {_describe(ref)}"
                                        + (" (a missing `return`?)" if yours is None else ""))
    if isinstance(ref, dict):
        if not isinstance(yours, dict) or set(yours) != set(ref):
            keys = sorted(map(str, yours)) if isinstance(yours, dict) else _describe(yours)
            return f"{where} should be a dict with keys {sorted(map(str, ref))}, yours is {keys}"
        return next((m for k in ref if (m := _compare(yours[k], ref[k], f"{where}[{k!r}]", rtol, atol))), "")
    if isinstance(ref, (tuple, list)):
        if not isinstance(yours, (tuple, list)) or len(yours) != len(ref):
            return f"{where} should be a {type(ref).__name__} of {len(ref)} items, yours is {_describe(yours)}" + \
                (f" of {len(yours)} items" if isinstance(yours, (tuple, list)) else "")
        fields = getattr(ref, "_fields", None)   # a namedtuple (e.g. HeatmapOutput): name its fields
        labels = [f"{where}.{f}" for f in fields] if fields else [f"{where}[{i}]" for i in range(len(ref))]
        return next((m for y, r, label in zip(yours, ref, labels) if (m := _compare(y, r, label, rtol, atol))), "")
    for kind in (torch.Tensor, np.ndarray):
        if isinstance(ref, kind) and not isinstance(yours, kind):
            return f"{where} is {_describe(yours)}, the package's is {_describe(ref)}"
    try:
        return _compare_arrays(yours, ref, where, rtol, atol)
    except (TypeError, ValueError):
        return "" if yours == ref else f"{where} is {yours!r}, the package's is {ref!r}"


def check_function(student_fn: Callable, reference_fn: Callable, *args, name: str = "", hint: str = "",
                   rtol: float = 1e-5, atol: float = 1e-6, **kwargs) -> None:
    """Call ``student_fn`` and ``reference_fn`` with the same ``args`` / ``kwargs`` (each on its own copy) and compare
    the results (tensors, arrays, numbers, or tuples / namedtuples / dicts of them; see the module docstring).

    Raises :class:`ExerciseNotDone` while the student's blank raises ``NotImplementedError`` ("the blank above is still
    empty") or when the outputs differ (the largest difference and where); prints ``✓ <name> matches the package``.
    """
    name = name or getattr(student_fn, "__name__", "your function")
    expected = _call(reference_fn, args, kwargs, _qualname(reference_fn), "")
    result = _call(student_fn, args, kwargs, name, hint)
    problem = _compare(result, expected, "your output", rtol, atol)
    if problem:
        raise ExerciseNotDone(f"{name} does not match {_qualname(reference_fn)} yet: {problem}.{_suffix(hint)}")
    print(f"✓ {name} matches the package")


def _list(names: set) -> str:
    names = sorted(names)
    return ", ".join(names[:MAX_NAMES]) + (f" (+{len(names) - MAX_NAMES} more)" if len(names) > MAX_NAMES else "")


def _same_layout(student: nn.Module, reference: nn.Module, name: str, hint: str) -> None:
    """The student's parameter / buffer names and shapes are the package's, or ExerciseNotDone listing what differs."""
    mine, ref = student.state_dict(), reference.state_dict()
    where = _qualname(reference)
    missing, unexpected = set(ref) - set(mine), set(mine) - set(ref)
    if missing or unexpected:
        parts = ([f"missing {_list(missing)}"] if missing else []) + \
                ([f"unexpected {_list(unexpected)}"] if unexpected else [])
        raise ExerciseNotDone(f"{name}: your module's parameters are not named as {where}'s ({'; '.join(parts)}): "
                              f"name your attributes as {where} does (print() both modules to compare)."
                              f"{_suffix(hint)}")
    shapes = [f"{k}: yours {tuple(mine[k].shape)}, the package's {tuple(ref[k].shape)}"
              for k in ref if mine[k].shape != ref[k].shape]
    if shapes:
        raise ExerciseNotDone(f"{name}: parameter shapes differ from {where}'s ({'; '.join(shapes[:MAX_NAMES])}): "
                              f"check the channel counts and kernel sizes.{_suffix(hint)}")


def check_module(student_module: Union[nn.Module, Callable[[], nn.Module]], reference_module: nn.Module, *inputs,
                 name: str = "", hint: str = "", rtol: float = 1e-4, atol: float = 1e-5) -> None:
    """Check the student's ``nn.Module`` against the package's, by value.

    ``student_module`` is an instance or a zero-argument callable building one (so a blank in ``__init__`` is caught).
    Compared, in order: the ``state_dict`` names (parameters and buffers; missing / unexpected ones are listed), their
    shapes, the number of parameters; then the reference's ``state_dict`` is loaded into the student's module
    (``strict=True``), both run ``forward(*inputs)`` in ``eval()`` mode without gradients, and the outputs are
    compared as in :func:`check_function`. The modules' train/eval modes are restored afterwards; the student's
    module keeps the package's weights. Prints ``✓ <name> matches <package class> (N parameters)``.
    """
    name = name or type(reference_module).__name__
    if not isinstance(student_module, nn.Module) and callable(student_module):
        student_module = _call(student_module, (), {}, name, hint)
    if not isinstance(student_module, nn.Module):
        raise ExerciseNotDone(f"{name}: expected an nn.Module (or a function building one), got "
                              f"{_describe(student_module)}.{_suffix(hint)}")
    _same_layout(student_module, reference_module, name, hint)
    count = sum(p.numel() for p in reference_module.parameters())
    mine = sum(p.numel() for p in student_module.parameters())
    if mine != count:
        raise ExerciseNotDone(f"{name}: {mine} parameters, the package has {count}: register every layer as an "
                              f"attribute, as {_qualname(reference_module)} does.{_suffix(hint)}")
    student_module.load_state_dict(reference_module.state_dict(), strict=True)
    modes = [(m, m.training) for m in (student_module, reference_module)]
    try:
        student_module.eval(), reference_module.eval()
        with torch.no_grad():
            expected = _call(reference_module, inputs, {}, _qualname(reference_module), "")
            result = _call(student_module, inputs, {}, f"{name}.forward", hint)
    finally:
        for module, training in modes:
            module.train(training)
    problem = _compare(result, expected, "your output", rtol, atol)
    if problem:
        raise ExerciseNotDone(f"{name} (with the package's weights) does not match {_qualname(reference_module)} "
                              f"yet: {problem}.{_suffix(hint)}")
    print(f"✓ {name} matches {_qualname(reference_module)} ({count:,} parameters)")
