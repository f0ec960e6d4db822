"""BPR, Bayesian personalised ranking, trained by the DSGD block machinery.

The interactions are cut into the same ``d x d`` grid as :class:`dmf.SGD`'s
(user and item blocks balanced by nnz, each block's interactions grouped by
cache tiles in a seeded shuffled order) and an epoch runs the ``d`` strata in
a seeded order; each block's pass (:mod:`dmf._kernels.bpr`) takes one
pairwise step per interaction with a negative drawn from the keyed stream of
the block and epoch. Small fits with no Client run as lanes of threads in this
process, larger ones or any fit on a Client as ``bpr-block`` Dask tasks; both
make the same passes with the same compiled code (:mod:`._bpr_rounds`), so a
seed and a grid give bit-identical factors either way.

Where the negatives come from (the sampling distribution): a negative is
drawn uniformly from the *whole* catalogue, as in Rendle et al.'s BPR, and
with ``verify_negative_samples`` drawn again when the user has interacted with
it. A block may only write the rows of its own item block (that is what keeps
the blocks of a stratum lock-free), so a negative outside the block is scored
against the item factors as the epoch started (a read-only snapshot shipped
once per epoch) and only the user's and the positive item's rows take the
step; the negative's own row moves only when it is drawn inside its block
(one draw in ``d`` on average). Drawing negatives only from the block's own
item range instead would never compare items of different item blocks: the
order between item blocks would be left unlearnt, and precision@10 on
MovieLens 100K fell below popularity's on a 2 x 2 grid.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from dmf._errors import ConvergenceError, check_choice
from dmf.data._ratings import Ratings
from dmf.engine import Engine
from dmf.kernels._sgd import tile_rows
from dmf.models._training import FitArgs, train
from dmf.models.sgd import _bpr_rounds
from dmf.models.sgd._bpr_rounds import BPRSpec, _lists_from_blocks
from dmf.models.sgd._common import DSGDConfig, DSGDModel
from dmf.models.sgd._grid import Grid, initial_factors
from dmf.models.sgd._schedules import _pad, round_length

__all__ = ["BPR", "BPRConfig"]


@dataclass(frozen=True)
class BPRConfig(DSGDConfig):
    """A BPR fit's hyper-parameters, checked and typed (made by ``BPR._prepare``)."""

    verify_negative_samples: bool
    negatives: str


class BPR(DSGDModel):
    r"""Bayesian personalised ranking (Rendle et al., UAI 2009) trained by DSGD.

    Scores :math:`x_{ui} = p_u \cdot q_i + b_i`, learnt from implicit
    feedback: every training rating is an interaction (its value is not
    used). Each epoch takes, for every interaction :math:`(u, i)`, one SGD
    step on :math:`\ln \sigma(x_{ui} - x_{uj}) - \lambda (\lVert
    p_u\rVert^2 + \lVert q_i\rVert^2 + \lVert q_j\rVert^2) - \lambda_b
    (b_i^2 + b_j^2)` with a negative item :math:`j` drawn uniformly from the
    catalogue (see :mod:`dmf.models.sgd._bpr` for how the DSGD grid handles
    negatives outside a block). Recommendations rank items by :math:`x_{ui}`;
    :meth:`predict` returns these scores, not ratings.

    The grid, strata and seeded visiting orders are :class:`dmf.SGD`'s: for a
    given ``seed`` and ``grid`` the factors are bit-identical on the threaded
    scheduler, in-process and on a distributed cluster.

    Parameters
    ----------
    rank : int
        Number of latent factors (>= 1).
    max_iter : int
        Epochs: passes over the interactions (>= 1).
    lr : float
        Learning rate :math:`\eta` (> 0).
    reg : float
        :math:`\lambda`, regularisation of the factors (>= 0).
    reg_bias : float
        :math:`\lambda_b`, regularisation of the item biases (>= 0).
    biases : bool
        Learn the item biases :math:`b_i` (default).
    verify_negative_samples : bool
        Draw a negative again when the user has interacted with it (as the
        ``implicit`` library's option of that name, which skips such samples
        instead). ``False`` takes every draw, which is faster on sparse data.
    negatives : {"uniform", "popular"}
        How negatives are drawn: uniformly from the catalogue (Rendle et al.), or
        each item in proportion to its number of training interactions (as the
        ``implicit`` library does), which keeps drawing items a user might rank
        high where a long tail makes most uniform draws trivially ordered.
    init_scale : float
        Initial factors are drawn from :math:`\mathcal N(0, \text{init\_scale}^2)`
        (seeded); item biases start at 0.
    grid : int or None
        Blocks per side of the DSGD grid (>= 1, at most the number of users
        and of items). ``None``: the number of Dask worker threads at fit time.
    seed : int or None
        Seed of every random draw, in ``[0, 2**63 - 1]``. ``None`` draws one,
        kept in ``seed_``.
    dtype : {"float32", "float64"}
        Precision of the factors.
    verbose : bool
        Print one line per epoch.

    Attributes
    ----------
    user_factors_, item_factors_ : numpy.ndarray
        ``(n_users, rank)``, ``(n_items, rank)``.
    item_bias_ : numpy.ndarray
        :math:`b_i` (zeros with ``biases=False``); ``user_bias_`` is zero and
        ``global_mean_`` 0.
    grid_, seed_ : int
    history : pandas.DataFrame
        Per epoch: ``epoch``, ``loss`` (mean :math:`-\ln \sigma(x_{uij})` over
        the epoch's steps, each measured just before it), ``correct`` (the
        fraction of steps whose pair was already ordered right), ``skipped``
        (interactions with no negative left to draw), ``lr``, ``seconds``.

    Examples
    --------
    Interactions with no rating column (``rating=None``: each row counts 1):

    >>> import pandas as pd, dmf
    >>> clicks = pd.DataFrame({"user": ["a", "a", "b", "b", "c"], "item": [1, 2, 2, 3, 1]})
    >>> model = dmf.BPR(rank=8, max_iter=3, grid=1).fit(dmf.from_pandas(clicks, rating=None))
    >>> model.user_factors_.shape, list(model.history.columns[:3])
    ((3, 8), ['epoch', 'loss', 'correct'])
    """

    kind = "bpr"
    #: Trained on interactions: constant values are expected (no warning), and
    #: fold-in takes items with no rating column (projected as implicit ALS does).
    implicit = True
    _config = BPRConfig
    _flags = ("biases", "verify_negative_samples", "verbose")

    def __init__(
        self,
        rank: int = 64,
        max_iter: int = 60,
        lr: float = 0.03,
        reg: float = 0.01,
        reg_bias: float = 0.0,
        biases: bool = True,
        verify_negative_samples: bool = True,
        negatives: str = "uniform",
        init_scale: float = 0.1,
        grid: int | None = None,
        seed: int | None = 0,
        dtype: str = "float32",
        verbose: bool = False,
    ) -> None:
        self.rank = rank
        self.max_iter = max_iter
        self.lr = lr
        self.reg = reg
        self.reg_bias = reg_bias
        self.biases = biases
        self.verify_negative_samples = verify_negative_samples
        self.negatives = negatives
        self.init_scale = init_scale
        self.grid = grid
        self.seed = seed
        self.dtype = dtype
        self.verbose = verbose

    def _validate_params(self) -> None:
        super()._validate_params()
        check_choice("negatives", self.negatives, ("uniform", "popular"))

    def fit(
        self, ratings: Any, checkpoint: Any = None, checkpoint_every: int = 1, resume: bool = False
    ) -> BPR:
        """Train on a :class:`dmf.Ratings` of interactions; returns ``self``.

        Parameters
        ----------
        ratings : dmf.Ratings
            Who interacted with what (the values are not used).
        checkpoint, checkpoint_every, resume
            As for :meth:`dmf.SGD.fit`: a crash-safe checkpoint store saved every
            ``checkpoint_every`` epochs and the last, and resuming from it,
            bit-identical to an uninterrupted fit.

        Returns
        -------
        BPR
            The fitted estimator.

        Raises
        ------
        dmf.ParameterError
            A bad hyper-parameter, or a grid larger than the number of users
            or of items.

        Examples
        --------
        >>> import dmf
        >>> from dmf.testing import random_ratings
        >>> model = dmf.BPR(rank=4, max_iter=2, grid=1).fit(random_ratings(n_users=20, n_items=9))
        >>> model.recommend(model.users_[0], k=3).shape[0]
        3
        """
        args = FitArgs.check(None, checkpoint, checkpoint_every, resume)
        self._every = args.checkpoint_every if args.checkpoint is not None else None
        try:
            return train(self, ratings, args)
        finally:
            for name in ("_every", "_cfg", "_grid_seed", "_state"):
                self.__dict__.pop(name, None)

    # ------------------------------------------------------- training hooks
    def _iterations(
        self, ratings: Ratings, engine: Engine, start: int, saved: Any
    ) -> Iterator[dict[str, Any]]:
        cfg = self._cfg
        d, seed = self._grid_seed
        self.grid_, self.seed_ = d, seed
        dt = np.dtype(cfg.dtype)
        grid = Grid.build(engine, ratings, d, seed, dt.name, tile_rows(cfg.kpad, dt.itemsize))
        lists = engine.map(
            "bpr-lists",
            functools.partial(_lists_from_blocks, grid.row_edges, grid.col_edges),
            range(d),
            range(1, d + 1),
            grid.blocks,
            token=seed,
        )
        (lists,) = engine.persist(lists)
        # Cumulative interaction counts: negatives drawn in proportion (none: uniform).
        cum = np.cumsum(ratings.item_counts) if cfg.negatives == "popular" else np.zeros(0)
        verify = cfg.verify_negative_samples
        consts = (cfg.reg, cfg.reg_bias, cfg.biases, verify, cum.astype(np.int64))
        spec = BPRSpec(grid, lists, consts, seed)
        if saved is None:
            P, Q = initial_factors(ratings, seed, cfg.rank, cfg.kpad, cfg.init_scale, dt)
            self._state = (P, Q, np.zeros(ratings.n_items, dtype=dt))
        else:
            arrays = saved[0]
            self._state = (_pad(arrays["P"], cfg.kpad), _pad(arrays["Q"], cfg.kpad), arrays["bi"])
        done = start
        while done < cfg.max_iter:
            n = round_length(done, cfg.max_iter, "constant", False, self._every)
            lrs = [cfg.lr] * n
            # Lanes of threads in-process, one graph per round otherwise: the same bits.
            strategy = engine.pick(_bpr_rounds._inprocess_round, _bpr_rounds._dask_round)
            t0 = time.perf_counter()
            stats, self._state = strategy(spec, self._state, range(done, done + n), lrs)
            secs = (time.perf_counter() - t0) / n
            for e in range(n):
                loss, correct, skipped = (math.fsum(stats[e, :, c]) for c in range(3))
                steps = max(1.0, ratings.nnz - skipped)
                if not math.isfinite(loss):
                    raise ConvergenceError(
                        f"BPR diverged in epoch {done + e + 1}: the loss is {loss} with "
                        f"lr={cfg.lr:g}; use a smaller lr (e.g. lr={cfg.lr / 10:g})"
                    )
                if e == n - 1:
                    self._publish()
                yield {
                    "epoch": done + e + 1,
                    "loss": loss / steps,
                    "correct": correct / steps,
                    "skipped": int(skipped),
                    "lr": lrs[e],
                    "seconds": secs,
                }
            done += n

    def _checkpoint_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        P, Q, bi = self._state
        rank = self._cfg.rank
        return {"P": P[:, :rank], "Q": Q[:, :rank], "bi": bi}, {"grid": self._grid_seed[0]}

    def _finish(self) -> None:
        super()._finish()
        self._publish()

    # ---------------------------------------------------------- internals
    def _publish(self) -> None:
        P, Q, bi = self._state
        rank = self._cfg.rank
        self.user_factors_ = np.ascontiguousarray(P[:, :rank])
        self.item_factors_ = np.ascontiguousarray(Q[:, :rank])
        self.item_bias_ = np.asarray(bi) if self._cfg.biases else np.zeros_like(bi)
        self.user_bias_ = np.zeros(P.shape[0], dtype=P.dtype)
        self.global_mean_ = 0.0  # scores are for ranking: no rating offset
