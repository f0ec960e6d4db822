"""Alternating least squares: explicit (biased, ALS-WR) and implicit feedback (iALS).

One iteration is two half-sweeps: items against the fixed users, then users
against the fixed items (Spark's order). A half-sweep is one ``als-solve-items``
/ ``als-solve-users`` block call per CSR block (built and persisted once per
fit), stated once against the :class:`~dmf.engine.Engine`: each call gets its
block, the whole other-side factor matrix (shared, so a worker fetches it once)
and, for implicit feedback, the shared Gram ``YᵀY`` (an ``als-gram`` blocked
reduction). The new factors are gathered and checked before the next
half-sweep, so no graph grows across iterations. Fit, validation, history and
checkpoints are the shared training loop's (:mod:`dmf.models._training`); the
numerical work is :func:`dmf.kernels._als_block.solve_block`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dask
import numpy as np

from dmf._errors import (
    ConvergenceError,
    RatingsError,
    check_choice,
    check_float,
    check_int,
    check_param,
    first_rows,
)
from dmf.data._ratings import Ratings
from dmf.engine import Engine
from dmf.kernels._als_block import SolveConfig, add, gram_part, solve_block
from dmf.models._recommender import Recommender
from dmf.models._training import FitArgs, Iterative, fit_method, train

__all__ = ["ALS"]

SOLVERS = ("cholesky", "cg")
_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# Defaults of the implicit model, chosen on validation folds (docs/als.md): the
# unobserved weight is this multiple of the training density, capped at 1.
IMPLICIT_REG = 0.02
EXPLICIT_REG = 0.12
UNOBSERVED_PER_DENSITY = 6.0
INIT_SIGMA = 0.1


def _bad_confidences(block: Any) -> tuple[int, list[tuple[int, int, float]]]:
    bad = np.flatnonzero(~(block.data >= 0))  # negative or NaN
    rows = [
        (int(block.rows[j]) + block.start, int(block.cols[j]), float(block.data[j]))
        for j in bad[:5]
    ]
    return int(bad.size), rows


@dataclass(frozen=True)
class _Side:
    """One side of the factorisation: its name, CSR blocks and block edges."""

    name: str
    csrs: list[Any]
    edges: np.ndarray

    def slices(self, X: np.ndarray) -> list[np.ndarray]:
        return [X[a:b] for a, b in itertools.pairwise(self.edges)]


# ----------------------------------------------------------------- estimator
class ALS(Iterative, Recommender):
    r"""Matrix factorisation by alternating least squares, explicit or implicit feedback.

    **Explicit** (default): :math:`\hat r_{ui} = \mu + b_u + b_i + x_u \cdot y_i`,
    fitted by minimising

    .. math::

        \sum_{(u,i) \in R} (r_{ui} - \mu - b_u - b_i - x_u \cdot y_i)^2
        + \sum_u w_u (\lambda \|x_u\|^2 + \lambda_b b_u^2)
        + \sum_i w_i (\lambda \|y_i\|^2 + \lambda_b b_i^2)

    with :math:`w_u = n_u`, the user's rating count (ALS-WR, as Spark's
    ``regParam``; ``weighted_reg=False`` gives :math:`w = 1`). Each half-sweep
    solves every row's factors and bias jointly (features :math:`[y_i, 1]`,
    targets :math:`r_{ui} - \mu - b_i`); :math:`\mu` is the training mean and is
    not fitted. The bias is regularised like the factors unless ``reg_bias``
    is given.

    **Implicit** (``implicit=True``, iALS: Hu, Koren & Volinsky 2008 with the
    unobserved weight and regularisation of Rendle et al. 2022): confidence
    :math:`c_{ui} = 1 + \alpha r_{ui}`, preference :math:`p_{ui} = [r_{ui} > 0]`,
    over *all* user-item pairs, the unobserved ones weighted :math:`\alpha_0`:

    .. math::

        \sum_{(u,i) \in R} c_{ui} (p_{ui} - x_u \cdot y_i)^2
        + \alpha_0 \sum_{(u,i) \notin R} (x_u \cdot y_i)^2
        + \lambda \left(\sum_u w_u \|x_u\|^2 + \sum_i w_i \|y_i\|^2\right)

    with :math:`w_u = (n_u + \alpha_0 n_\text{items})^\nu` (frequency-scaled,
    ``weighted_reg=None``), :math:`n_u^\nu` (``True``) or 1 (``False``). The
    defaults are tuned for top-N ranking (see the ALS guide): every interaction
    counts the same (:math:`\alpha = 0`), :math:`\alpha_0` is 6 times the
    training density (at most 1), :math:`\lambda = 0.02`, :math:`\nu = 1`,
    initial factors of standard deviation :math:`0.1/\sqrt{d}`. No biases and no
    global mean: scores are :math:`x_u \cdot y_i` (predictions are clipped to
    ``[0, 1]``). The shared :math:`Y^T Y` is one blocked reduction per half-sweep.

    Solvers: ``"cholesky"`` forms each row's Gram matrix and solves it exactly;
    ``"cg"`` runs ``cg_steps`` conjugate-gradient steps warm-started from the
    previous factors, without forming the Gram (Takács et al. 2011).
    ``nonnegative=True`` constrains the factors (not the biases) to be
    non-negative with an exact NNLS solve (projected coordinate descent on the
    Gram) whichever ``solver`` is chosen.

    Users and items without training ratings get zero factors and zero bias,
    so they are predicted by the bias fallback.

    Parameters
    ----------
    rank : int
        Number of latent factors (>= 1).
    reg : float or None
        :math:`\lambda` (>= 0); ``None``: 0.12 explicit, 0.02 implicit. The
        explicit defaults (rank 64, ``reg`` 0.12, ``reg_bias`` 0.03, 15
        iterations, ALS-WR) reach test RMSE 0.923 on MovieLens 100K u1.
    reg_bias : float or None
        :math:`\lambda_b` (>= 0) for the biases; ``None`` uses ``reg``. Biases
        are low-variance, so they take a lighter penalty than the factors
        (0.03 rather than 0.12 gains 0.002 RMSE on MovieLens 100K).
    max_iter : int
        Iterations (>= 1); one iteration solves items then users.
    solver : {"cholesky", "cg"}
    cg_steps : int
        Conjugate-gradient steps per row and half-sweep (>= 1; ``solver="cg"``).
    implicit : bool
        Fit the implicit-feedback model (ratings must be >= 0).
    alpha : float
        Confidence scale :math:`\alpha` (>= 0) of the implicit model; 0 (default)
        treats every interaction alike, whatever its value.
    unobserved_weight : float or None
        :math:`\alpha_0` in ``(0, 1]``, the weight of the unobserved pairs of the
        implicit model; ``None``: 6 times the training density, at most 1.
        ``1`` with ``weighted_reg=False`` is the model of Hu et al. (and of the
        ``implicit`` library).
    reg_exponent : float
        :math:`\nu` (>= 0) of the implicit model's row weights.
    weighted_reg : bool or None
        Explicit: weight :math:`\lambda` by each row's rating count (ALS-WR,
        ``None`` or ``True``) or not. Implicit: ``None`` frequency-scaled, ``True``
        count-weighted, ``False`` plain (see above).
    nonnegative : bool
        Non-negative factors.
    tol : float
        Stop early when the objective changes by less than ``tol`` relative to
        its previous value (>= 0; 0 runs all ``max_iter`` iterations).
    init_scale : float or None
        Standard deviation of the random initial factors (> 0); ``None``: 0.1
        explicit, :math:`0.1/\sqrt{\text{rank}}` implicit.
    dtype : numpy float dtype
        ``numpy.float32`` (default) or ``numpy.float64`` factors.
    seed : int
        Seed of the initial factors, in ``[0, 2**63 - 1]``; the same seed gives the
        same model on the threaded scheduler and on a distributed cluster.
    verbose : bool
        Show progress (one line or bar update per iteration).

    Attributes
    ----------
    user_factors_, item_factors_ : numpy.ndarray
        ``(n_users, rank)`` and ``(n_items, rank)``, of ``dtype``.
    user_bias_, item_bias_ : numpy.ndarray
        float32 biases (zero for implicit feedback).
    history_ : list of dict
        Per iteration: ``objective``, ``train_rmse`` (explicit), ``val_rmse``
        (with ``validation=``), ``seconds``.
    n_iter_ : int
        Iterations run.

    Examples
    --------
    >>> import dmf
    >>> from dmf.testing import random_ratings
    >>> train = random_ratings(n_users=30, n_items=20, seed=0)
    >>> model = dmf.ALS(rank=4, max_iter=5, seed=0).fit(train)
    >>> model.user_factors_.shape, model.n_iter_
    ((30, 4), 5)
    >>> bool(model.history["objective"].is_monotonic_decreasing)
    True
    """

    kind = "als"

    def __init__(
        self,
        rank: int = 64,
        reg: float | None = None,
        reg_bias: float | None = 0.03,
        max_iter: int = 15,
        solver: str = "cholesky",
        cg_steps: int = 3,
        implicit: bool = False,
        alpha: float = 0.0,
        unobserved_weight: float | None = None,
        reg_exponent: float = 1.0,
        weighted_reg: bool | None = None,
        nonnegative: bool = False,
        tol: float = 0.0,
        init_scale: float | None = None,
        dtype: Any = np.float32,
        seed: int = 0,
        verbose: bool = False,
    ) -> None:
        self.rank = rank
        self.reg = reg
        self.reg_bias = reg_bias
        self.max_iter = max_iter
        self.solver = solver
        self.cg_steps = cg_steps
        self.implicit = implicit
        self.alpha = alpha
        self.unobserved_weight = unobserved_weight
        self.reg_exponent = reg_exponent
        self.weighted_reg = weighted_reg
        self.nonnegative = nonnegative
        self.tol = tol
        self.init_scale = init_scale
        self.dtype = dtype
        self.seed = seed
        self.verbose = verbose

    # ---------------------------------------------------------- parameters
    def _validate_params(self) -> None:
        check_int("rank", self.rank, 1)
        if self.reg is not None:
            check_float("reg", self.reg, 0.0)
        if self.reg_bias is not None:
            check_float("reg_bias", self.reg_bias, 0.0)
        check_int("max_iter", self.max_iter, 1)
        check_choice("solver", self.solver, SOLVERS)
        check_int("cg_steps", self.cg_steps, 1)
        check_choice("implicit", self.implicit, (False, True))
        check_float("alpha", self.alpha, 0.0)
        if self.unobserved_weight is not None:
            check_float("unobserved_weight", self.unobserved_weight, 0.0, strict=True, high=1.0)
        check_float("reg_exponent", self.reg_exponent, 0.0)
        check_param(
            "weighted_reg",
            self.weighted_reg,
            self.weighted_reg is None or isinstance(self.weighted_reg, bool),
            "True, False or None",
        )
        check_choice("nonnegative", self.nonnegative, (False, True))
        check_float("tol", self.tol, 0.0)
        if self.init_scale is not None:
            check_float("init_scale", self.init_scale, 0.0, strict=True)
        try:
            dt = np.dtype(self.dtype)
        except TypeError:
            dt = None
        check_param("dtype", self.dtype, dt in _DTYPES, "numpy.float32 or numpy.float64")
        check_int("seed", self.seed, 0, 2**63 - 1)
        check_choice("verbose", self.verbose, (False, True))

    def _unobserved_weight(self) -> float:
        """``unobserved_weight``, or its default from the training density (fitting only)."""
        if not self.implicit:
            return 1.0
        if self.unobserved_weight is not None:
            return float(self.unobserved_weight)
        n_users, n_items = len(self.user_counts_), len(self.item_counts_)
        density = float(np.sum(self.user_counts_)) / max(n_users * n_items, 1)
        return min(1.0, UNOBSERVED_PER_DENSITY * density)

    def _solve_config(self) -> SolveConfig:
        """The block solve's settings, resolved (fitted or fitting models only)."""
        implicit = bool(self.implicit)
        reg = float((IMPLICIT_REG if implicit else EXPLICIT_REG) if self.reg is None else self.reg)
        weighted = self.weighted_reg
        return SolveConfig(
            implicit=implicit,
            reg=reg,
            reg_bias=reg if self.reg_bias is None else float(self.reg_bias),
            weighted=True if weighted is None else bool(weighted),
            alpha=float(self.alpha),
            unobserved_weight=self._unobserved_weight(),
            reg_mode=2 if weighted is None else int(bool(weighted)),
            reg_exponent=float(self.reg_exponent),
            cg=self.solver == "cg",
            cg_steps=int(self.cg_steps),
            nonnegative=bool(self.nonnegative),
            mu=float(self.global_mean_),
        )

    def _init_scale(self) -> float:
        if self.init_scale is not None:
            return float(self.init_scale)
        return INIT_SIGMA / np.sqrt(int(self.rank)) if self.implicit else INIT_SIGMA

    # ------------------------------------------------------------------ fit
    @fit_method
    def fit(self, ratings: Ratings, args: FitArgs, /) -> ALS:
        """Fit to a :class:`dmf.Ratings`; returns ``self``.

        Parameters
        ----------
        ratings : dmf.Ratings
            Training data (for ``implicit=True``: non-negative values, e.g. counts).
        validation : dmf.Ratings or pandas.DataFrame, optional
            Held-out ratings; their RMSE is recorded per iteration as ``val_rmse``.
        checkpoint : str, optional
            Local path or fsspec URL of a checkpoint store, written every
            ``checkpoint_every`` iterations and after the last one.
        checkpoint_every : int
            Iterations between checkpoints (>= 1).
        resume : bool
            Continue from the newest checkpoint in ``checkpoint`` (a fresh fit
            if it holds none); the result equals an uninterrupted fit.

        Raises
        ------
        dmf.ParameterError
            A hyper-parameter or argument is out of range (before any work).
        dmf.RatingsError
            Empty ratings, or negative or NaN values for an implicit fit.
        dmf.ConvergenceError
            A half-sweep produced NaN or infinite factors (names block and iteration).

        Examples
        --------
        >>> import dmf
        >>> from dmf.testing import random_ratings
        >>> train = random_ratings(n_users=30, n_items=20, seed=0)
        >>> model = dmf.ALS(rank=4, max_iter=50, tol=1e-3).fit(train, validation=train)
        >>> model.n_iter_ < 50, "val_rmse" in model.history
        (True, True)
        """
        return train(self, ratings, args)

    # ------------------------------------------------------- training hooks
    def _prepare(self, ratings: Ratings, saved: dict[str, Any] | None) -> None:
        if not self.implicit:
            return
        parts = dask.compute([dask.delayed(_bad_confidences)(b) for b in ratings.blocks])[0]
        n = sum(p[0] for p in parts)
        if n:
            rows = [r for p in parts for r in p[1]][:5]
            shown = [
                f"(user {ratings.users[u]!r}, item {ratings.items[i]!r}, {v:g})" for u, i, v in rows
            ]
            raise RatingsError(
                "an implicit fit needs ratings >= 0 (confidence 1 + alpha*r, preference r > 0): "
                f"{n} negative value(s) or NaN, first {first_rows(shown)}"
            )

    def _fingerprint(self) -> dict[str, Any]:
        params = {k: v for k, v in self.get_params().items() if k not in ("verbose", "max_iter")}
        params["dtype"] = np.dtype(params["dtype"]).name
        params["tol"] = float(params["tol"])
        return {"params": params, "train": self.train_info_}

    def _iterations(
        self, ratings: Ratings, engine: Engine, start: int, saved: Any
    ) -> Iterator[dict[str, Any]]:
        if self.implicit:
            # Scores are preferences x_u . y_i: no mean, no biases; clip to [0, 1].
            self.global_mean_ = 0.0
            self.rating_scale_ = (0.0, 1.0)
        cfg = self._solve_config()
        iedges = ratings.col_edges(ratings.n_blocks)
        ucsr, icsr = engine.persist(ratings.row_csr(), ratings.col_csr(iedges))
        users = _Side("users", list(ucsr), np.asarray(ratings.row_edges, np.int64))
        items = _Side("items", list(icsr), np.asarray(iedges, np.int64))
        dt = np.dtype(self.dtype)
        if saved is None:
            U, bu, V, bi = self._init_state(dt, int(self.rank))
        else:
            arrays, state = saved
            U, V = arrays["user_factors"].astype(dt), arrays["item_factors"].astype(dt)
            bu, bi = arrays["user_bias"].astype(dt), arrays["item_bias"].astype(dt)
            self._prev_objective = state.get("objective")
        self._state = (U, bu, V, bi, getattr(self, "_prev_objective", None))
        self.n_iter_ = start
        for it in range(start, int(self.max_iter)):
            V, bi, _, reg_i, _ = self._half_sweep(engine, items, users, (V, bi), (U, bu), cfg, it)
            U, bu, loss, reg_u, gram_v = self._half_sweep(
                engine, users, items, (U, bu), (V, bi), cfg, it, want_loss=True
            )
            entry: dict[str, Any] = {"iteration": it + 1}
            if cfg.implicit:
                uu = U.T.astype(np.float64) @ U.astype(np.float64)
                obj = loss + cfg.unobserved_weight * float(np.sum(uu * gram_v)) + reg_u + reg_i
            else:
                obj = loss + reg_u + reg_i
                entry["train_rmse"] = float(np.sqrt(loss / ratings.nnz))
            entry["objective"] = float(obj)
            self._state = (U, bu, V, bi, float(obj))
            self._publish()
            self.n_iter_ = it + 1
            yield entry

    def _publish(self) -> None:
        U, bu, V, bi, _ = self._state
        self.user_factors_ = U
        self.item_factors_ = V
        self.user_bias_ = bu.astype(np.float32)
        self.item_bias_ = bi.astype(np.float32)

    def _checkpoint_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        U, bu, V, bi, obj = self._state
        arrays = {"user_factors": U, "user_bias": bu, "item_factors": V, "item_bias": bi}
        return arrays, {"objective": obj}

    def _finish(self) -> None:
        super()._finish()
        self._publish()
        del self._state

    # ------------------------------------------------------------- helpers
    def _init_state(self, dt: np.dtype, k: int) -> tuple[np.ndarray, ...]:
        rng = np.random.default_rng(int(self.seed))
        scale = self._init_scale()
        U = rng.normal(0.0, scale, (len(self.users_), k)).astype(dt)
        V = rng.normal(0.0, scale, (len(self.items_), k)).astype(dt)
        if self.nonnegative:
            np.abs(U, out=U)
            np.abs(V, out=V)
        U[self.user_counts_ == 0] = 0
        V[self.item_counts_ == 0] = 0
        return U, np.zeros(len(U), dt), V, np.zeros(len(V), dt)

    def _half_sweep(
        self,
        engine: Engine,
        side: _Side,
        other_side: _Side,
        own: tuple[np.ndarray, np.ndarray],
        other: tuple[np.ndarray, np.ndarray],
        cfg: SolveConfig,
        it: int,
        want_loss: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, float, float, np.ndarray | None]:
        """Solve every block of ``side``: new factors, biases, loss, reg term and gram."""
        Y = engine.share(other[0])
        gram = None
        if cfg.implicit:
            starts, stops = other_side.edges[:-1].tolist(), other_side.edges[1:].tolist()
            parts = engine.map(
                f"als-gram-{side.name}", gram_part, starts, stops, shared=(Y,), token=it
            )
            gram = engine.reduce(f"als-gram-reduce-{side.name}", add, parts)
        n = len(side.csrs)
        warm = cfg.cg or cfg.nonnegative
        X0 = side.slices(own[0]) if warm else [None] * n
        b0 = side.slices(own[1]) if warm else [None] * n
        shared = (Y, engine.share(other[1]), gram, cfg, want_loss)
        solved = engine.map(
            f"als-solve-{side.name}", solve_block, side.csrs, X0, b0, shared=shared, token=it
        )
        results, gram_value = engine.compute(solved, gram)
        return (*self._gather(side, results, own[0], it, cfg), gram_value)

    def _gather(
        self, side: _Side, results: list[Any], own: np.ndarray, it: int, cfg: SolveConfig
    ) -> tuple[np.ndarray, np.ndarray, float, float]:
        """The blocks' results joined, checked finite: factors, biases, loss, reg term."""
        X = np.concatenate([r[0] for r in results]) if results else own
        for j, r in enumerate(results):
            bad = ~np.isfinite(r[0]).all() or (r[1] is not None and ~np.isfinite(r[1]).all())
            if bad or not np.isfinite(r[2] + r[3]):
                a, b = int(side.edges[j]), int(side.edges[j + 1])
                raise ConvergenceError(
                    f"ALS produced non-finite {side.name[:-1]} factors in block {j} "
                    f"({side.name} codes {a}..{b - 1}) at iteration {it + 1}: the problem is "
                    "ill-conditioned or overflows (reg=0? huge ratings or alpha?); "
                    "try a larger reg, a smaller alpha or dtype=numpy.float64"
                )
        if cfg.implicit:
            bias = np.zeros(len(X), X.dtype)
        else:
            bias = np.concatenate([r[1] for r in results])
        return X, bias, float(sum(r[2] for r in results)), float(sum(r[3] for r in results))
