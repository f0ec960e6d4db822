"""Exception and warning types raised by dmf, and helpers that word their messages."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = [
    "ClusterError",
    "ConvergenceError",
    "DMFError",
    "DMFWarning",
    "DatasetError",
    "NotFittedError",
    "ParameterError",
    "RatingsError",
    "StoreError",
    "UnknownIdError",
]


class DMFError(Exception):
    """Base class of every error dmf raises on purpose."""


class RatingsError(DMFError, ValueError):
    """Input ratings are malformed: missing ids, bad values, duplicates, wrong columns."""


class ParameterError(DMFError, ValueError):
    """A hyper-parameter or argument is outside what is allowed."""


class ConvergenceError(DMFError, RuntimeError):
    """A solver produced NaN or infinite values."""


class StoreError(DMFError, OSError):
    """A model store is missing, incomplete, foreign or of an unknown format."""


class NotFittedError(DMFError, AttributeError):
    """A model was used before ``fit``."""


class UnknownIdError(DMFError, ValueError):
    """Ids the model never saw in training, under ``cold_start="raise"``."""


class DatasetError(DMFError, OSError):
    """A data set is not available locally and cannot be downloaded, or its checksum differs."""


class ClusterError(DMFError, RuntimeError):
    """The Dask cluster (scheduler, client or workers) went away during a computation."""


class DMFWarning(UserWarning):
    """Warnings dmf emits itself (tests turn them into errors)."""


def first_rows(rows: Iterable[Any], limit: int = 5) -> str:
    """Word the first offending rows of a problem, e.g. ``"rows 3, 17, 20"``."""
    shown = [str(r) for _, r in zip(range(limit), rows, strict=False)]
    return ", ".join(shown)


def check_param(name: str, value: Any, ok: bool, allowed: str) -> None:
    """Raise :class:`ParameterError` naming ``name``, its value and what is allowed."""
    if not ok:
        raise ParameterError(f"{name}={value!r} is not allowed: {name} must be {allowed}")


def check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    """Check an integer parameter lies in ``[low, high]`` and return it as ``int``."""
    import numbers

    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    ok = ok and value >= low and (high is None or value <= high)
    allowed = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
    check_param(name, value, ok, allowed)
    return int(value)


def check_float(
    name: str, value: Any, low: float = 0.0, *, strict: bool = False, high: float | None = None
) -> float:
    """Check a real parameter is finite and ``>= low`` (``> low`` when strict)."""
    import math
    import numbers

    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and (value > low if strict else value >= low)
    ok = ok and (high is None or value <= high)
    sign = ">" if strict else ">="
    allowed = f"a finite number {sign} {low}" + ("" if high is None else f" and <= {high}")
    check_param(name, value, ok, allowed)
    return float(value)


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Check ``value`` is one of ``choices``."""
    choices = list(choices)
    try:
        ok = any(value is c or (isinstance(value, type(c)) and value == c) for c in choices)
    except (TypeError, ValueError):
        ok = False
    check_param(name, value, bool(ok), "one of " + ", ".join(map(repr, choices)))
    return value
