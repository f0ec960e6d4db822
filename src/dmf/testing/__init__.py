"""Helpers for testing code that uses dmf (and dmf itself).

- :func:`data_home`: the folder holding MovieLens copies (``$DMF_DATA``), or None.
- :func:`local_cluster`: a real multi-process ``LocalCluster`` with a client that is
  current only inside the ``with`` block.
- :func:`scheduler`: run a block on ``"sync"``, ``"threads"`` or a given client.
- :func:`random_ratings`: a small random :class:`dmf.Ratings` for numerical tests.
- :func:`reference_explicit`, :func:`reference_implicit`, :func:`reference_ials`,
  :func:`reference_explicit_objective`: the slow dense ALS solvers the kernels match;
  :func:`reference_bpr`: plain-Python BPR steps the BPR block kernel matches.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pandas as pd

from dmf.data._io import from_pandas
from dmf.kernels._bpr import reference_bpr
from dmf.testing._als_reference import (
    reference_explicit,
    reference_explicit_objective,
    reference_ials,
    reference_implicit,
)

__all__ = [
    "data_home",
    "local_cluster",
    "random_frame",
    "random_ratings",
    "reference_bpr",
    "reference_explicit",
    "reference_explicit_objective",
    "reference_ials",
    "reference_implicit",
    "scheduler",
]


def data_home() -> Path | None:
    """``$DMF_DATA`` if it names an existing folder, else None.

    Examples
    --------
    >>> import os
    >>> from dmf.testing import data_home
    >>> old = os.environ.pop("DMF_DATA", None)
    >>> data_home() is None
    True
    >>> if old is not None:
    ...     os.environ["DMF_DATA"] = old
    """
    env = os.environ.get("DMF_DATA")
    if env and Path(env).is_dir():
        return Path(env)
    return None


@contextlib.contextmanager
def local_cluster(n_workers: int = 2, threads_per_worker: int = 1) -> Iterator[Any]:
    """A multi-process ``LocalCluster`` and a client that is current inside the block.

    Examples
    --------
    >>> import dmf
    >>> from dmf.testing import local_cluster, random_ratings
    >>> with local_cluster(n_workers=2) as client:  # doctest: +SKIP
    ...     model = dmf.fit(random_ratings(), method="baseline")
    ...     len(client.nthreads())
    2
    """
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            processes=True,
            dashboard_address=":0",
            worker_class="distributed.Nanny",
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
        client.as_current(),
    ):
        yield client


@contextlib.contextmanager
def scheduler(name: str, client: Any = None) -> Iterator[None]:
    """Run the block on ``"sync"``, ``"threads"`` or ``"distributed"`` (needs ``client``).

    Examples
    --------
    >>> import dmf
    >>> from dmf.testing import random_ratings, scheduler
    >>> r = random_ratings()
    >>> with scheduler("sync"):
    ...     a = dmf.fit(r, method="baseline").user_bias_
    >>> with scheduler("threads"):
    ...     b = dmf.fit(r, method="baseline").user_bias_
    >>> bool((a == b).all())
    True
    """
    if name == "distributed":
        if client is None:
            raise ValueError("scheduler('distributed') needs a client")
        with client.as_current():
            yield
    else:
        with dask.config.set(scheduler=name):
            yield


def random_frame(
    n_users: int = 60,
    n_items: int = 40,
    density: float = 0.3,
    seed: int = 0,
    scale: tuple[float, float] = (1.0, 5.0),
) -> pd.DataFrame:
    """Random ratings with no duplicate pairs, every user and item rated at least once.

    Examples
    --------
    >>> from dmf.testing import random_frame
    >>> df = random_frame(n_users=5, n_items=4, seed=0)
    >>> list(df.columns), df["user"].nunique(), df["item"].nunique()
    (['user', 'item', 'rating'], 5, 4)
    """
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    mask[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    mask[rng.integers(0, n_users, n_items), np.arange(n_items)] = True
    u, i = np.nonzero(mask)
    lo, hi = scale
    r = np.round(rng.uniform(lo, hi, len(u)) * 2) / 2
    return pd.DataFrame({"user": u, "item": i, "rating": r.astype(np.float32)})


def random_ratings(chunk_nnz: int | None = None, **kw: Any) -> Any:
    """:func:`random_frame` as a :class:`dmf.Ratings`.

    Examples
    --------
    >>> from dmf.testing import random_ratings
    >>> r = random_ratings(n_users=6, n_items=5, seed=0)
    >>> r.n_users, r.n_items
    (6, 5)
    """
    return from_pandas(random_frame(**kw), chunk_nnz=chunk_nnz)
