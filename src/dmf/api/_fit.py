"""The function front door: ``dmf.fit(ratings, method=...)``."""

from __future__ import annotations

import inspect
from typing import Any

from dmf._errors import ParameterError
from dmf.engine._progress import performance_report
from dmf.models import ALS, BPR, SGD, Baseline, Popular, Recommender

__all__ = ["METHODS", "fit"]

#: ``method=`` names and the estimator classes they build.
METHODS: dict[str, type[Recommender]] = {
    "baseline": Baseline,
    "als": ALS,
    "sgd": SGD,
    "popular": Popular,
    "bpr": BPR,
}


def fit(
    ratings: Any, method: str = "baseline", *, report: Any = None, **params: Any
) -> Recommender:
    """Fit a model and return it: ``dmf.fit(train, method="als", rank=64)``.

    The same as building the estimator and calling ``fit``: parameters that
    ``fit`` takes (``validation=``, ``checkpoint=``, ...) go to ``fit``, the
    rest to the estimator's constructor.

    Parameters
    ----------
    ratings : dmf.Ratings
        Training data.
    method : str
        One of ``dmf.METHODS``: ``"baseline"`` (biases only), ``"popular"``
        (interaction counts), the rating models ``"als"`` and ``"sgd"``, and the
        ranking models ``"als"`` with ``implicit=True`` and ``"bpr"``.
    report : str or path, optional
        Save a Dask performance report of the fit to this ``.html`` file. With
        a ``distributed.Client`` active it is ``distributed.performance_report``
        (task stream, worker profiles, transfers); on the local threaded
        scheduler it is a ``dask.diagnostics`` profile (task timeline, CPU and
        memory). Needs ``bokeh``.
    **params
        Hyper-parameters of the estimator, and keyword arguments of its ``fit``.

    Returns
    -------
    Recommender
        The fitted estimator.

    Examples
    --------
    >>> import pandas as pd, dmf
    >>> r = dmf.from_pandas(pd.DataFrame({"user": [1, 2], "item": [1, 1], "rating": [3.0, 5.0]}))
    >>> dmf.fit(r, method="baseline", reg_item=0.0).global_mean_
    4.0
    """
    est, fit_kwargs = make_estimator(method, params)
    with performance_report(report):
        return est.fit(ratings, **fit_kwargs)


def make_estimator(method: Any, params: dict[str, Any]) -> tuple[Recommender, dict[str, Any]]:
    """The estimator named by ``method`` and the share of ``params`` that goes to its ``fit``.

    Constructor parameters build the estimator; names ``fit`` takes are returned
    for it; any other name is a :class:`dmf.ParameterError`.
    """
    if not isinstance(method, str) or method not in METHODS:
        raise ParameterError(f"method={method!r} is unknown; choose one of {sorted(METHODS)}")
    cls = METHODS[method]
    fit_names = set(inspect.signature(cls.fit).parameters) - {"self", "ratings"}
    ctor_names = set(cls._param_names(deprecated=True))
    unknown = set(params) - fit_names - ctor_names
    if unknown:
        raise ParameterError(
            f"unknown parameter(s) {sorted(unknown)} for method={method!r}; "
            f"it takes {sorted(ctor_names | fit_names)}"
        )
    est = cls(**{k: v for k, v in params.items() if k in ctor_names})
    return est, {k: v for k, v in params.items() if k in fit_names}
