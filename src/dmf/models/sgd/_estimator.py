"""The SGD estimator: biased MF by DSGD, on the shared training loop.

The matrix is cut into a grid (:mod:`._grid`); rounds of epochs run as lanes
in-process or as one Dask graph, as the engine picks (:mod:`._rounds`); the
learning-rate schedule, best epoch and early stop live in :mod:`._schedules`;
the training loop (:mod:`dmf.models._training`) owns validation, history,
checkpoints and resuming.

Every random draw is keyed by the seed and what it is for, never by where a
task runs: the initial factors come from ``numpy.random.default_rng([seed,
0])``, every shuffle from its own keyed stream (:mod:`dmf.kernels._rng`). The
same seed and grid give bit-identical factors on the threaded scheduler,
in-process and on a distributed cluster, and a fit resumed from a checkpoint
ends bit-identical to one that was never interrupted.
"""

from __future__ import annotations

import itertools
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from dmf._errors import (
    DMFWarning,
    RatingsError,
    check_choice,
    check_float,
    check_int,
    first_rows,
)
from dmf.data._ratings import Ratings
from dmf.engine import Engine
from dmf.kernels._sgd import tile_rows
from dmf.models._training import FitArgs, deprecated_alias, fit_method, train
from dmf.models.sgd import _rounds
from dmf.models.sgd._common import DSGDConfig, DSGDModel
from dmf.models.sgd._grid import Grid, initial_factors
from dmf.models.sgd._rounds import RoundSpec
from dmf.models.sgd._schedules import (
    _NAMES,
    LR_SCHEDULES,
    _last_accepted,
    _Run,
    epoch_lr,
    round_length,
)

__all__ = ["SGD", "SGDConfig"]


@dataclass(frozen=True)
class SGDConfig(DSGDConfig):
    """An SGD fit's hyper-parameters, checked and typed (made by ``SGD._prepare``)."""

    lr_schedule: str
    lr_decay: float
    patience: int | None


class SGD(DSGDModel):
    r"""Biased matrix factorisation trained by distributed stratified SGD (DSGD).

    Prediction (Koren's biased MF, the model Surprise's ``SVD`` trains):
    :math:`\hat r_{ui} = \mu + b_u + b_i + p_u \cdot q_i`. SGD minimises

    .. math::

        \sum_{(u,i)} \left[(r_{ui} - \hat r_{ui})^2
        + \lambda (\lVert p_u\rVert^2 + \lVert q_i\rVert^2)
        + \lambda_b (b_u^2 + b_i^2)\right]

    one rating at a time: :math:`e = r_{ui} - \hat r_{ui}`,
    :math:`b_u \mathrel{+}= \eta (e - \lambda_b b_u)` (same for :math:`b_i`),
    :math:`p_u \mathrel{+}= \eta (e q_i - \lambda p_u)`,
    :math:`q_i \mathrel{+}= \eta (e p_u - \lambda q_i)`.

    The matrix is cut into a ``grid x grid`` array of blocks; each epoch runs
    ``grid`` strata (in an order reshuffled each epoch), each stratum's
    ``grid`` blocks share no users and no items and run as parallel
    ``dsgd-block`` Dask tasks (Gemulla et al., KDD 2011); a fit of at most
    2,000,000 ratings with no distributed Client runs them on a pool of
    threads in this process instead, with no task graph (the same result,
    without Dask's per-task cost). Within a block the
    ratings are stored grouped by cache-sized tiles (user range x item range),
    shuffled within each tile; each epoch visits the tiles, and chunks of
    1024 ratings within a tile, in a fresh seeded order. For a given ``seed`` and
    ``grid`` the result is bit-identical on the threaded scheduler and on a
    distributed cluster.

    Parameters
    ----------
    rank : int
        Number of latent factors (>= 1).
    max_iter : int
        Epochs: passes over the training data (>= 1); Surprise's ``n_epochs``.
    lr : float
        Learning rate :math:`\eta` (> 0); the starting rate for ``"decay"``
        and ``"bold-driver"``.
    reg : float
        :math:`\lambda`, regularisation of the factors (>= 0).
    reg_bias : float
        :math:`\lambda_b`, regularisation of the biases (>= 0).
    lr_schedule : {"constant", "decay", "bold-driver"}
        ``"constant"``: :math:`\eta` every epoch. ``"decay"``: inverse-time
        decay :math:`\eta_t = \eta / (1 + \text{lr\_decay} \cdot t)` for epoch
        :math:`t = 0, 1, \dots`. ``"bold-driver"``: after an epoch whose
        training loss fell, :math:`\eta \leftarrow 1.05\,\eta`; after one whose
        loss rose (or became NaN/inf), the epoch's result is thrown away (the
        previous factors are restored) and :math:`\eta \leftarrow \eta / 2`.
        With ``"constant"`` and ``"decay"``, a NaN/inf loss raises
        :class:`dmf.ConvergenceError` naming the epoch.
    lr_decay : float
        Decay rate of the ``"decay"`` schedule (>= 0).
    biases : bool
        Learn :math:`b_u, b_i` (default). ``False`` trains plain MF around the
        global mean, :math:`\mu + p_u \cdot q_i`.
    init_scale : float
        Initial factors are drawn from :math:`\mathcal N(0, \text{init\_scale}^2)`
        (seeded); biases start at 0.
    grid : int or None
        Blocks per side of the DSGD grid (>= 1, at most the number of users
        and of items). ``None``: the number of Dask worker threads at fit time.
        The result depends on ``grid`` (only within noise).
    patience : int or None
        With ``validation=``: stop after this many epochs without a better
        validation RMSE. ``None``: run every epoch. Either way the model
        returned holds the best epoch's factors.
    seed : int or None
        Seed of every random draw, in ``[0, 2**63 - 1]``. ``None`` draws one, kept in
        ``seed_``.
    dtype : {"float32", "float64"}
        Precision of the factors.
    verbose : bool
        Print one line per epoch.
    n_epochs : int, optional
        Deprecated name of ``max_iter``.

    Attributes
    ----------
    user_factors_, item_factors_ : numpy.ndarray
        ``(n_users, rank)``, ``(n_items, rank)``.
    user_bias_, item_bias_ : numpy.ndarray
    global_mean_ : float
    grid_ : int
        The grid used.
    seed_ : int
    best_epoch_ : int
        The epoch (1-based) whose factors were returned.
    history : pandas.DataFrame
        Per epoch: ``epoch``, ``loss`` (the regularised objective above divided
        by the number of ratings, with each squared error measured during the
        pass just before its rating's update), ``train_rmse`` (from the same
        errors), ``val_rmse`` (with ``validation=``), ``lr`` (the rate used),
        ``restored`` (only with ``"bold-driver"``: the epoch was thrown away),
        ``seconds``.

    Examples
    --------
    >>> import dmf
    >>> from dmf.testing import random_ratings
    >>> train = random_ratings(n_users=50, n_items=30, seed=1)
    >>> model = dmf.SGD(rank=4, max_iter=3, grid=2, seed=0).fit(train)
    >>> model.user_factors_.shape, len(model.history)
    ((50, 4), 3)
    >>> model.predict([0], [0]).dtype
    dtype('float32')
    """

    kind = "sgd"
    _deprecated = ("n_epochs",)
    _config = SGDConfig
    _unfingerprinted = (*DSGDModel._unfingerprinted, "patience")

    def __init__(
        self,
        rank: int = 64,
        max_iter: int = 45,
        lr: float = 0.01,
        reg: float = 0.08,
        reg_bias: float = 0.01,
        lr_schedule: str = "constant",
        lr_decay: float = 0.05,
        biases: bool = True,
        init_scale: float = 0.02,
        grid: int | None = None,
        patience: int | None = None,
        seed: int | None = 0,
        dtype: str = "float32",
        verbose: bool = False,
        n_epochs: int | None = None,
    ) -> None:
        self.rank = rank
        self.max_iter = max_iter
        self.lr = lr
        self.reg = reg
        self.reg_bias = reg_bias
        self.lr_schedule = lr_schedule
        self.lr_decay = lr_decay
        self.biases = biases
        self.init_scale = init_scale
        self.grid = grid
        self.patience = patience
        self.seed = seed
        self.dtype = dtype
        self.verbose = verbose
        deprecated_alias(self, "n_epochs", n_epochs, "max_iter")

    # ------------------------------------------------------------ checking
    def _validate_params(self) -> None:
        super()._validate_params()
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        check_float("lr_decay", self.lr_decay, 0.0)
        if self.patience is not None:
            check_int("patience", self.patience, 1)

    # ----------------------------------------------------------------- fit
    @fit_method
    def fit(self, ratings: Any, args: FitArgs, /) -> SGD:
        """Train on a :class:`dmf.Ratings`; returns ``self``.

        Parameters
        ----------
        ratings : dmf.Ratings
            Training data.
        validation : dmf.Ratings or pandas.DataFrame, optional
            Held-out ratings scored (RMSE) after every epoch; the returned model
            is the best epoch's, and ``patience`` stops early. It must share at
            least one user and one item with ``ratings`` (else
            :class:`dmf.RatingsError` before any epoch).
        checkpoint : str, optional
            Local path or fsspec URL of a checkpoint store, saved every
            ``checkpoint_every`` epochs (crash-safe).
        checkpoint_every : int
            Epochs between checkpoints (>= 1); the last epoch is always saved.
        resume : bool
            Continue from the newest checkpoint in ``checkpoint`` (start afresh
            if there is none). The result is bit-identical to an uninterrupted
            fit with the same data, parameters and grid.

        Returns
        -------
        SGD
            The fitted estimator.

        Examples
        --------
        Validation after every epoch, then a fit stopped after 2 epochs and
        resumed to 4, which ends with the factors of an uninterrupted one:

        >>> import dmf, os, tempfile
        >>> from dmf.testing import random_ratings
        >>> train = random_ratings(n_users=30, n_items=20, seed=0)
        >>> valid = random_ratings(n_users=30, n_items=20, seed=1)
        >>> model = dmf.SGD(rank=4, max_iter=3, grid=1).fit(train, validation=valid)
        >>> list(model.history["epoch"])
        [1, 2, 3]
        >>> path = os.path.join(tempfile.mkdtemp(), "sgd.ckpt")
        >>> _ = dmf.SGD(rank=4, max_iter=2, grid=1).fit(train, checkpoint=path)
        >>> resumed = dmf.SGD(rank=4, max_iter=4, grid=1).fit(train, checkpoint=path, resume=True)
        >>> whole = dmf.SGD(rank=4, max_iter=4, grid=1).fit(train)
        >>> bool((resumed.user_factors_ == whole.user_factors_).all())
        True
        """
        self._args = args
        try:
            return train(self, ratings, self._args)
        finally:
            for name in ("_args", "_cfg", "_grid_seed", "_run"):
                self.__dict__.pop(name, None)

    # ------------------------------------------------------- training hooks
    def _prepare(self, ratings: Ratings, saved: dict[str, Any] | None) -> None:
        if self._args.validation is not None:
            _check_overlap(self._args.validation, ratings)
        super()._prepare(ratings, saved)

    def _iterations(
        self, ratings: Ratings, engine: Engine, start: int, saved: Any
    ) -> Iterator[dict[str, Any]]:
        cfg, args = self._cfg, self._args
        d, seed = self._grid_seed
        self.grid_, self.seed_ = d, seed
        dt = np.dtype(cfg.dtype)
        grid = Grid.build(engine, ratings, d, seed, dt.name, tile_rows(cfg.kpad, dt.itemsize))
        counts = tuple(
            [c[a:b].astype(np.float64) for a, b in itertools.pairwise(edges)]
            for c, edges in (
                (ratings.user_counts, grid.row_edges),
                (ratings.item_counts, grid.col_edges),
            )
        )
        mu = float(ratings.global_mean)
        spec = RoundSpec(grid, counts, (mu, cfg.reg, cfg.reg_bias, cfg.biases), seed)
        if saved is None:
            P, Q = initial_factors(ratings, seed, cfg.rank, cfg.kpad, cfg.init_scale, dt)
            zeros = np.zeros(ratings.n_users, dtype=dt), np.zeros(ratings.n_items, dtype=dt)
            run = _Run((P, Q, *zeros), cfg.lr)
        else:
            run = _Run.from_checkpoint(start, saved[0], saved[1]["run"], cfg.kpad)
        self._run = run
        validated = args.validation is not None
        every = args.checkpoint_every if args.checkpoint is not None else None
        nxt = run.start
        while nxt < cfg.max_iter:
            n = round_length(nxt, cfg.max_iter, cfg.lr_schedule, validated, every)
            lrs = []
            for e in range(nxt, nxt + n):
                run.lr = epoch_lr(cfg.lr_schedule, cfg.lr, cfg.lr_decay, e, run.lr)
                lrs.append(run.lr)
            t0 = time.perf_counter()
            # Lanes of threads in-process, one graph per round otherwise: the same bits.
            strategy = engine.pick(_rounds._inprocess_round, _rounds._dask_round)
            losses, end = strategy(spec, run.current, range(nxt, nxt + n), lrs)
            secs = (time.perf_counter() - t0) / n
            for k, (lr, parts) in enumerate(zip(lrs, losses, strict=True)):
                last = k == n - 1
                entry = run.step(cfg.lr_schedule, nxt + k, lr, parts, ratings.nnz,
                                 end if last else None)  # fmt: skip
                entry["seconds"] = secs
                if last or validated:
                    self._set_factors(run.current, cfg.rank)
                yield entry
            nxt += n

    def _should_stop(self, entry: dict[str, Any]) -> bool:
        if "val_rmse" in entry:
            self._run.score(int(entry["epoch"]), float(entry["val_rmse"]), self._cfg.patience)
        return self._run.stopped

    def _checkpoint_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        run, rank = self._run, self._cfg.rank
        arrays = dict(zip(_NAMES, run.current, strict=True))
        if run.best_arrays is not None:
            arrays.update({"best_" + k: v for k, v in zip(_NAMES, run.best_arrays, strict=True)})
        for name in ("P", "Q", "best_P", "best_Q"):
            if name in arrays:
                arrays[name] = arrays[name][:, :rank]
        return arrays, {"grid": self._grid_seed[0], "run": run.state()}

    def _finish(self) -> None:
        super()._finish()
        run, cfg = self._run, self._cfg
        if self._args.validation is not None and run.best_arrays is not None:
            final = run.best_arrays
            self.best_epoch_ = int(run.best["epoch"])
        else:
            final = run.current
            self.best_epoch_ = _last_accepted(self.history_)
        if not run.accepted:
            warnings.warn(
                f"the training loss never fell (bold driver restored every epoch, ending "
                f"with lr={run.lr:g}): the model holds its initial factors; use a smaller "
                f"lr than {self.lr}",
                DMFWarning,
                stacklevel=5,
            )
        self._set_factors(final, cfg.rank)

    # ---------------------------------------------------------- internals
    def _set_factors(self, state: tuple[np.ndarray, ...], rank: int) -> None:
        P, Q, bu, bi = state
        self.user_factors_ = np.ascontiguousarray(P[:, :rank])
        self.item_factors_ = np.ascontiguousarray(Q[:, :rank])
        self.user_bias_ = np.asarray(bu)
        self.item_bias_ = np.asarray(bi)


def _check_overlap(validation: Ratings, ratings: Ratings) -> None:
    """Refuse a validation set sharing no user or no item with the training data.

    Its RMSE would come from cold-start predictions only, the same for every
    epoch: early stopping and best-epoch selection would be meaningless.
    """
    for side, val_ids, train_ids in (
        ("users", validation.users, ratings.users),
        ("items", validation.items, ratings.items),
    ):
        if not (train_ids.get_indexer(val_ids) >= 0).any():
            raise RatingsError(
                f"validation shares no {side} with the training data: none of its "
                f"{len(val_ids)} {side} (first {first_rows(map(repr, val_ids))}) is among "
                f"the {len(train_ids)} training {side}, so its RMSE could not change between "
                "epochs; validate on held-out ratings of the training users and items "
                "(e.g. dmf.split)"
            )
