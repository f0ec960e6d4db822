"""The one training loop of the iterative models.

A model supplies its iterations; the loop owns what is the same for all of
them: the fit arguments and their checks, validation data, the history and
progress, ``tol`` and early stopping, checkpoints and resuming with
fingerprints. The hooks a model implements:

- ``_validate_params()``: hyper-parameter checks, before any work;
- ``_prepare(ratings, saved)``: data checks and choices made before the
  fingerprint (``saved``: the checkpoint's JSON state when resuming, or None);
- ``_fingerprint()``: what a checkpoint must match to be resumed (the training
  state, ``train_info_`` and friends, is set by then);
- ``_iterations(ratings, engine, start, saved)``: a generator that runs
  iterations ``start, start + 1, ...``, publishes the fitted attributes after
  each and yields its history entry (``saved``: ``(arrays, state)`` to resume
  from, or None);
- ``_checkpoint_state()``: ``(arrays, json_state)`` to save after an iteration;
- ``_should_stop(entry)``: early stopping (default: relative change of
  ``entry["objective"]`` at most ``tol``);
- ``_finish()``: after the last iteration.
"""

from __future__ import annotations

import functools
import inspect
import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from dmf._errors import DMFWarning, ParameterError, RatingsError, check_int, check_param
from dmf.data._io import to_ratings
from dmf.data._ratings import Ratings, check_ratings
from dmf.engine import Engine
from dmf.evaluation import evaluate
from dmf.store._checkpoint import load_checkpoint, save_checkpoint

__all__ = ["Config", "FitArgs", "Iterative", "deprecated_alias", "fit_method", "train"]

_F = TypeVar("_F", bound=Callable[..., Any])


@dataclass(frozen=True)
class FitArgs:
    """The arguments of ``fit`` that every iterative model takes, checked."""

    validation: Ratings | None = None
    checkpoint: str | None = None
    checkpoint_every: int = 1
    resume: bool = False

    @classmethod
    def check(
        cls,
        validation: Any = None,
        checkpoint: str | os.PathLike[str] | None = None,
        checkpoint_every: int = 1,
        resume: bool = False,
    ) -> FitArgs:
        """Validate and normalise (``checkpoint`` as a string, ``validation`` as Ratings)."""
        check_int("checkpoint_every", checkpoint_every, 1)
        check_param("resume", resume, isinstance(resume, bool), "True or False")
        if checkpoint is not None:
            check_param(
                "checkpoint",
                checkpoint,
                isinstance(checkpoint, (str, os.PathLike)),
                "a path or URL string, or None",
            )
            checkpoint = os.fspath(checkpoint)
        if resume and checkpoint is None:
            raise ParameterError("resume=True needs checkpoint= (the store to resume from)")
        if validation is not None:
            validation = to_ratings(validation, name="validation")
            if validation.nnz == 0:
                raise RatingsError("validation is empty: 0 ratings")
        return cls(validation, checkpoint, int(checkpoint_every), resume)


def fit_method(fit: _F) -> _F:
    """Give ``fit(self, ratings, args, /)`` the public ``fit(ratings, validation=None, ...)``.

    The arguments after ``ratings`` are :meth:`FitArgs.check`'s, declared there
    once; the model's ``fit`` receives them checked, as ``args``. Its docstring
    is its own.
    """
    own = list(inspect.signature(fit).parameters.values())[:2]
    shared = list(inspect.signature(FitArgs.check).parameters.values())
    plain = inspect.Parameter.POSITIONAL_OR_KEYWORD
    signature = inspect.signature(fit).replace(
        parameters=[p.replace(kind=plain) for p in own] + shared
    )

    @functools.wraps(fit)
    def public(self: Any, *args: Any, **kwargs: Any) -> Any:
        given = signature.bind(self, *args, **kwargs).arguments
        ratings = given.pop(own[1].name)
        del given[own[0].name]
        return fit(self, ratings, FitArgs.check(**given))

    public.__signature__ = signature  # type: ignore[attr-defined]
    return public  # type: ignore[return-value]


@dataclass(frozen=True)
class Config:
    """Base of a model's typed hyper-parameters (frozen dataclasses).

    :meth:`of` reads each field from the model's attribute of the same name,
    converted to the field's type (``T | None`` keeps ``None``).
    """

    @classmethod
    def of(cls, model: Any) -> Any:
        return cls(**{f.name: _convert(str(f.type), getattr(model, f.name)) for f in fields(cls)})


_TYPES: dict[str, Callable[[Any], Any]] = {"int": int, "float": float, "bool": bool, "str": str}


def _convert(kind: str, value: Any) -> Any:
    base, _, none = kind.partition(" | ")
    if none == "None" and value is None:
        return None
    return _TYPES[base](value)


def deprecated_alias(model: Any, old: str, value: Any, new: str) -> None:
    """Take ``old=value`` as ``new`` for one release, with a :class:`dmf.DMFWarning`."""
    if value is None:
        return
    warnings.warn(
        f"{type(model).__name__}({old}=...) is deprecated: use {new}= (the same meaning)",
        DMFWarning,
        stacklevel=3,
    )
    setattr(model, new, value)


def _converged(prev: float | None, obj: float | None, tol: float) -> bool:
    if prev is None or obj is None or tol <= 0:
        return False
    return abs(prev - obj) <= tol * max(abs(prev), 1e-300)


def _warn_constant(model: Any, ratings: Ratings) -> None:
    """An explicit model learns nothing from ratings that are all one value: say so."""
    lo, hi = getattr(ratings, "observed_range", (None, None))
    if getattr(model, "implicit", False) or lo is None or lo != hi:
        return
    warnings.warn(
        f"all {ratings.nnz} ratings equal {lo:g}: a {type(model).__name__} fitted on "
        "explicit ratings learns nothing from them. For interactions (clicks, plays, "
        "purchases) fit a ranking model: dmf.ALS(implicit=True)",
        DMFWarning,
        stacklevel=4,
    )


def train(model: Any, ratings: Any, args: FitArgs) -> Any:
    """Fit ``model`` on ``ratings`` with its iterations; returns the model."""
    model._validate_params()
    ratings = check_ratings(to_ratings(ratings, name="ratings"))
    loaded = load_checkpoint(args.checkpoint) if args.resume else None
    model._prepare(ratings, None if loaded is None else loaded[2])
    _warn_constant(model, ratings)
    model._set_training_state(ratings)
    fingerprint = model._fingerprint()
    start, saved = 0, None
    if loaded is not None:
        start, arrays, state = loaded
        _check_resumable(model, args.checkpoint, start, state.get("model"), fingerprint)
        saved = (arrays, state)
    if saved is not None:
        model.history_ = list(saved[1].get("history", []))
    engine = Engine.for_work(ratings.nnz)
    max_iter = int(model.max_iter)
    iterations: Iterator[dict[str, Any]] = model._iterations(ratings, engine, start, saved)
    t0 = time.perf_counter()
    done = start
    for entry in iterations:
        done += 1
        if args.validation is not None:
            entry["val_rmse"] = float(evaluate(model, args.validation, ["rmse"])["rmse"])
        entry.setdefault("seconds", time.perf_counter() - t0)
        model._record(model.verbose, **entry)
        stop = model._should_stop(entry)
        if args.checkpoint is not None and (
            done % args.checkpoint_every == 0 or done == max_iter or stop
        ):
            arrays, state = model._checkpoint_state()
            state = {**state, "history": model.history_, "model": fingerprint}
            save_checkpoint(args.checkpoint, done, arrays, state)
        if stop:
            break
        t0 = time.perf_counter()
    iterations.close()
    model._finish()
    return model


def _check_resumable(
    model: Any, path: str | None, it: int, saved: Any, now: dict[str, Any]
) -> None:
    if saved != now:
        diff = sorted(k for k in set(now) | set(saved or {}) if (saved or {}).get(k) != now.get(k))
        raise ParameterError(
            f"cannot resume from checkpoint {path!r}: it was written by a different fit "
            f"(other {diff}; checkpoint: {[(saved or {}).get(k) for k in diff]}; now: "
            f"{[now.get(k) for k in diff]}); resume with the same data and parameters, "
            "or use another checkpoint path"
        )
    if it > int(model.max_iter):
        raise ParameterError(
            f"checkpoint {path!r} is at iteration {it}, beyond max_iter={model.max_iter}"
        )


class Iterative:
    """Defaults of the training-loop hooks (mixed into the iterative models)."""

    tol: float = 0.0

    def _prepare(self, ratings: Ratings, saved: dict[str, Any] | None) -> None:
        """Checks and choices that need the data (default: none)."""

    def _should_stop(self, entry: dict[str, Any]) -> bool:
        obj = entry.get("objective")
        stop = _converged(getattr(self, "_prev_objective", None), obj, float(self.tol))
        self._prev_objective = obj
        return stop

    def _finish(self) -> None:
        self.__dict__.pop("_prev_objective", None)
