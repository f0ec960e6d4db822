"""Models trained by DSGD on the block grid: biased MF (:class:`SGD`) and :class:`BPR`.

:mod:`._grid` cuts the ratings into blocks, :mod:`._rounds` runs rounds of
epochs (lanes in-process or one Dask graph), :mod:`._schedules` carries the
learning rate and best epoch, :mod:`._common` holds what both estimators
share, :mod:`._estimator` is SGD on the shared training loop.
"""

from dmf.models.sgd._bpr import BPR, BPRConfig
from dmf.models.sgd._estimator import SGD, SGDConfig

__all__ = ["BPR", "SGD", "BPRConfig", "SGDConfig"]
