"""Where blocks run: threads in this process for small work, a Dask graph otherwise.

:class:`Engine` runs a model's per-block functions either way with the same
results; :mod:`._compute` holds the primitives (task keys, persist, thread
pools, tree reductions), :mod:`._faults` tells lost work from bugs and
:mod:`._progress` reports iterations.
"""

from dmf.engine._driver import Engine

__all__ = ["Engine"]
