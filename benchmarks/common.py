"""dmf's asv suite: shared data and helpers for the ``bench_*.py`` modules.

The suites are parametrised by data *shape*:

- ``"ml100k"``: MovieLens-100K-like synthetic data (943 users, 1,682 items, 100K ratings);
- ``"ml1m"``: MovieLens-1M-like (6,040 × 3,706, 1M ratings);
- ``"large"``: MovieLens-10M-like (69,878 × 10,677, 10M ratings), skipped under
  ``asv run --quick`` (and whenever ``DMF_BENCH_LARGE=0``).

Each shape is generated once by :func:`dmf.datasets.synthetic` (seed 0), split
80/20 by a seeded random mask, and cached as Parquet files under
``$DMF_BENCH_CACHE`` (default ``~/.cache/dmf-bench``), so every benchmark process
(and ``peers.py``, which reads the same files with every library) sees exactly the
same ratings. A benchmark whose dmf feature is not available raises
``NotImplementedError`` in ``setup``, which asv reports as skipped.

The standalone scripts in this folder (``peers.py``, ``memory_ceiling.py``,
``*_speed.py``) are not asv benchmarks: they run only as ``python benchmarks/x.py``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: name -> (n_users, n_items, nnz) of the synthetic data sets.
SHAPES: dict[str, tuple[int, int, int]] = {
    "ml100k": (943, 1_682, 100_000),
    "ml1m": (6_040, 3_706, 1_000_000),
    "large": (69_878, 10_677, 10_000_054),
    "ml20m": (138_493, 26_744, 20_000_263),
}

#: The shapes the time_/peakmem_ suites are parametrised by.
PARAMS = ["ml100k", "ml1m", "large"]

#: Rank, regularisation and iterations shared by the factor-model benchmarks.
RANK = 64
ALS_PARAMS: dict[str, Any] = {"rank": RANK, "reg": 0.05, "seed": 0}
SGD_PARAMS: dict[str, Any] = {"rank": RANK, "lr": 0.01, "reg": 0.05, "seed": 0}
#: Iterations (ALS sweeps, SGD epochs, baseline passes) of a timed fit.
ITERATIONS = 3
TEST_FRACTION = 0.2


def cache_dir() -> Path:
    """Where generated benchmark data lives (``$DMF_BENCH_CACHE``)."""
    path = Path(os.environ.get("DMF_BENCH_CACHE", Path.home() / ".cache" / "dmf-bench"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def is_quick() -> bool:
    """True under ``asv run --quick`` (or ``DMF_BENCH_QUICK=1``).

    asv does not tell a benchmark it runs in quick mode, so look at the command
    lines of this process's ancestors for ``--quick``/``-q`` after ``run``.
    """
    flag = os.environ.get("DMF_BENCH_QUICK")
    if flag is not None:
        return flag not in ("", "0")
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is in the bench and test extras
        return False
    try:
        proc: Any = psutil.Process()
        while proc is not None:
            cmd = proc.cmdline()
            # The asv command itself (`asv run ...` or `python -m asv run ...`), not
            # the runner subprocess it starts (`.../asv/benchmark.py run ...`).
            if "run" in cmd and any(os.path.basename(part) == "asv" for part in cmd[:3]):
                return "--quick" in cmd or "-q" in cmd
            proc = proc.parent()
    except (psutil.Error, OSError):
        return False
    return False


def check_shape(shape: str) -> None:
    """Skip (NotImplementedError) the shapes that are off for this run."""
    if shape in ("large", "ml20m"):
        if os.environ.get("DMF_BENCH_LARGE", "") == "0" or is_quick():
            raise NotImplementedError(f"shape {shape!r} is skipped under --quick")


def require(*names: str) -> Any:
    """The dmf module, or NotImplementedError when a needed feature has not landed."""
    import dmf

    for name in names:
        obj: Any = dmf
        for part in name.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                raise NotImplementedError(f"dmf.{name} is not available in this version")
    return dmf


def has_method(method: str) -> bool:
    import dmf

    return method in dmf.METHODS


def _fallback_frame(n_users: int, n_items: int, nnz: int, seed: int) -> pd.DataFrame:
    """Power-law ratings with a rank-10 signal, for versions without dmf.datasets.synthetic."""
    rng = np.random.default_rng(seed)
    pu = rng.pareto(1.2, n_users) + 1.0
    pi = rng.pareto(1.0, n_items) + 1.0
    pu, pi = pu / pu.sum(), pi / pi.sum()
    pairs = np.empty(0, dtype=np.int64)
    while len(pairs) < nnz:
        need = int((nnz - len(pairs)) * 1.3) + 1000
        u = rng.choice(n_users, need, p=pu)
        i = rng.choice(n_items, need, p=pi)
        pairs = np.unique(np.concatenate([pairs, u.astype(np.int64) * n_items + i]))
    pairs = rng.permutation(pairs)[:nnz]
    u, i = pairs // n_items, pairs % n_items
    p, q = rng.normal(0, 0.3, (n_users, 10)), rng.normal(0, 0.3, (n_items, 10))
    r = 3.5 + rng.normal(0, 0.3, n_users)[u] + rng.normal(0, 0.3, n_items)[i]
    r += np.einsum("ij,ij->i", p[u], q[i]) + rng.normal(0, 0.5, nnz)
    r = np.clip(np.round(r * 2) / 2, 1, 5)
    return pd.DataFrame({"user": u, "item": i, "rating": r.astype(np.float32)})


def generate(shape: str, seed: int = 0) -> pd.DataFrame:
    """The full synthetic data set of a shape, as a (user, item, rating) frame."""
    import dmf

    n_users, n_items, nnz = SHAPES[shape]
    datasets = getattr(dmf, "datasets", None)
    synthetic = getattr(datasets, "synthetic", None)
    if synthetic is None:
        return _fallback_frame(n_users, n_items, nnz, seed)
    r = synthetic(n_users=n_users, n_items=n_items, nnz=nnz, seed=seed)
    df = r.to_pandas()
    return df[["user", "item", "rating"]].reset_index(drop=True)


def split_frame(df: pd.DataFrame, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded 80/20 random split of rating rows (test users/items may be unseen)."""
    rng = np.random.default_rng(seed + 1)
    test = rng.random(len(df)) < TEST_FRACTION
    return (
        df[~test].reset_index(drop=True),
        df[test].reset_index(drop=True),
    )


def files(shape: str) -> tuple[Path, Path]:
    """Parquet files (train, test) of a shape, generated on first use."""
    folder = cache_dir() / shape
    train, test = folder / "train.parquet", folder / "test.parquet"
    if not (train.exists() and test.exists()):
        folder.mkdir(parents=True, exist_ok=True)
        if shape == "ml20m":
            # The memory-ceiling shape trains on all 20M ratings; its "test" file is a
            # small sample of them (a smoke check, not an accuracy measure).
            tr = generate(shape)
            te = tr.sample(n=20_000, random_state=0).reset_index(drop=True)
        else:
            tr, te = split_frame(generate(shape))
        # Write to temporaries and rename: a killed run never leaves half a file behind.
        for frame, path in ((tr, train), (te, test)):
            fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
            os.close(fd)
            frame.to_parquet(tmp, index=False)
            os.replace(tmp, path)
    return train, test


def frames(shape: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    train, test = files(shape)
    return pd.read_parquet(train), pd.read_parquet(test)


def ratings(shape: str) -> tuple[Any, Any]:
    """(train, test) Ratings of a shape; test has its own id maps (aligned by id)."""
    import dmf

    tr, te = frames(shape)
    return dmf.from_pandas(tr), dmf.from_pandas(te)


def estimator(method: str, n_iter: int = ITERATIONS) -> Any:
    """An unfitted estimator with the suite's matched settings."""
    import dmf

    if method not in dmf.METHODS:
        raise NotImplementedError(f"method={method!r} is not available in this version")
    cls = dmf.METHODS[method]
    if method == "baseline":
        return cls(max_iter=n_iter)
    if method == "als":
        return cls(max_iter=n_iter, **ALS_PARAMS)
    if method == "sgd":
        return cls(max_iter=n_iter, **SGD_PARAMS)
    raise NotImplementedError(method)


def fitted(method: str, train: Any, n_iter: int = ITERATIONS) -> Any:
    return estimator(method, n_iter).fit(train)


def warm_up(method: str | None = None, serving: bool = False) -> None:
    """Compile numba kernels on tiny data so timings measure the work, not the JIT.

    Always the Ratings build; with ``serving``, evaluation (error and ranking
    metrics) and top-k; with ``method``, that solver's kernels. Each benchmark
    compiles only what it times: asv runs every benchmark in a fresh process.
    """
    import dmf
    from dmf.testing import random_frame

    r = dmf.from_pandas(random_frame(40, 30, 0.3, seed=0))
    if serving:
        test = random_frame(40, 30, 0.1, seed=1)
        model = dmf.Baseline(max_iter=1).fit(r)
        dmf.evaluate(model, test, metrics=["rmse", "precision@5", "ndcg@5"], train=r)
        model.recommend(users=[0], k=5, exclude=r)
        out = model.recommend_all(k=5, exclude=r)
        if hasattr(out, "compute"):
            out.compute()
    if method is not None:
        fitted(method, r, max_iter=1)


def model_method() -> str:
    """The factor model the serving benchmarks use: ALS, else SGD, else the baseline."""
    import dmf

    for method in ("als", "sgd", "baseline"):
        if method in dmf.METHODS:
            return method
    raise NotImplementedError("no model available")  # pragma: no cover


def _source_token() -> str:
    """A hash of dmf's source files: cached models are refitted whenever the code changes."""
    import hashlib

    import dmf

    h = hashlib.sha1()
    for path in sorted(Path(dmf.__file__).parent.rglob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def fitted_models() -> dict[str, Any]:
    """One fitted model per enabled shape: the serving suites' shared ``setup_cache``.

    asv keys a ``setup_cache`` by the function's module and line, so the suites
    that use ``setup_cache = staticmethod(fitted_models)`` share one result per
    run; across runs, fits are also kept in a pickle keyed by dmf's source code
    and the settings (a code change refits).
    """
    import pickle

    method = model_method()
    out: dict[str, Any] = {}
    for shape in PARAMS:
        try:
            check_shape(shape)
        except NotImplementedError:
            continue
        token = f"{method}-{shape}-{ITERATIONS}-{RANK}-{_source_token()}"
        path = cache_dir() / "models" / f"{token}.pkl"
        if path.exists():
            with open(path, "rb") as f:
                out[shape] = pickle.load(f)
            continue
        warm_up(method)
        train, _ = ratings(shape)
        out[shape] = fitted(method, train)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            pickle.dump(out[shape], f)
        os.replace(tmp, path)
    return out


fitted_models.timeout = 3600  # type: ignore[attr-defined]
