"""BLAS pinned to one thread while a block kernel calls it.

Dask's threads (or dmf's in-process pool) own the cores; a kernel that calls
BLAS from one of them must not start BLAS threads of its own.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["one_blas_thread"]

_BLAS_LOCK = threading.Lock()
_BLAS_STATE: dict[str, Any] = {"controller": None, "limiter": None, "depth": 0}


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Pin BLAS to one thread while any ALS task of this process runs.

    Dask's threads own the cores. Reference-counted so that concurrent tasks do
    not restore each other's limit half-way and the user's BLAS setting comes
    back when the last one finishes.
    """
    with _BLAS_LOCK:
        if _BLAS_STATE["depth"] == 0:
            if _BLAS_STATE["controller"] is None:
                from threadpoolctl import ThreadpoolController

                _BLAS_STATE["controller"] = ThreadpoolController()
            _BLAS_STATE["limiter"] = _BLAS_STATE["controller"].limit(limits=1, user_api="blas")
        _BLAS_STATE["depth"] += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_STATE["depth"] -= 1
            if _BLAS_STATE["depth"] == 0:
                _BLAS_STATE["limiter"].restore_original_limits()
                _BLAS_STATE["limiter"] = None
