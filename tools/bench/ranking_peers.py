"""Top-N ranking side by side: dmf's models, popularity, an EASE reference and `implicit`.

Run it as a script (``$DMF_DATA`` names the folder with ``ml-100k/`` and ``lastfm-2k/``)::

    nice python tools/bench/ranking_peers.py --json docs/_data/ranking_peers.json
    nice python tools/bench/ranking_peers.py --data ml100k --grid   # + the reg x alpha grid

The protocol, the same for every model (one metric function, :func:`topn_metrics`):

- **MovieLens 100K**, the official ``u1.base``/``u1.test`` split. Every training
  rating is an interaction (value 1) for the ranking models; the rating models
  (dmf Baseline, SGD) train on the ratings themselves. Relevant: test rating >= 4.
- **Last.fm** (HetRec 2011, ``lastfm-2k/user_artists.dat``): play counts. A seeded
  per-user holdout (:func:`holdout_per_user`, seed 0): each user with at least two
  artists keeps a random 20 % of them (at least one) for the test set; users with
  one artist stay in training whole. Every model trains on the confidence value
  ``log(1 + plays)`` (``--lastfm-values`` changes it); EASE, popularity and BPR
  use the interactions alone. Relevant: every held-out artist.
- Ranking: each user's training items are masked; candidates are the items seen in
  training; ties go to the lower item code. Users evaluated: those seen in training
  with at least one relevant test item among the candidates.
- Metrics at k = 10, each the mean over evaluated users: precision ``hits / k``,
  recall ``hits / |relevant|``, NDCG with the ``1 / log2(rank + 1)`` discount and the
  ideal DCG over ``min(k, |relevant|)`` ranks.
- Fit seconds: the fit call alone, after a warm-up fit on tiny data (numba kernels
  compile once per process). EASE's fit is the Gram matrix and its inverse; every
  lambda of its grid is reported, the table row is the best on the test split (an
  oracle reference, as is ``--grid``'s best of the reg x alpha grid).

The script checks itself: ``dmf.evaluate``'s precision/recall/NDCG@10 of the dmf
implicit ALS fit must equal :func:`topn_metrics` on the same model (an
``AssertionError`` otherwise). ``implicit`` and LensKit are optional (never dmf
dependencies): their rows appear when they import. LensKit 2025.8 (ImplicitMF and
ItemKNN, :mod:`ranking_lenskit`) needs torch and pandas < 3, so run the script from a
venv made with ``--system-site-packages`` that holds them (the main one keeps pandas 3):
``PYTHONPATH=$PWD/src nice /tmp/lkvenv/bin/python tools/bench/ranking_peers.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import ranking_lenskit
import scipy.sparse as sp
from scipy.linalg import lapack

import dmf

K = 10
Scorer = Callable[[np.ndarray], np.ndarray]
EASE_LAMBDAS = {"ml100k": (50, 100, 200, 400, 800, 1600), "lastfm": (25, 50, 100, 200)}
GRID_REG = (0.01, 0.1, 1.0, 5.0)
GRID_ALPHA = (1.0, 5.0, 20.0)


# ------------------------------------------------------------------ the data
@dataclass
class Split:
    """One data set's (train, test) split, as codes shared by every model."""

    name: str
    description: str
    users: pd.Index  # original user ids, code order (training users)
    items: pd.Index  # original item ids, code order (training items)
    train: pd.DataFrame  # user, item (original ids), value (confidence), rating
    interactions: sp.csr_matrix  # users x items, 1 per training pair
    confidence: sp.csr_matrix  # users x items, the value ranking models train on
    relevant: sp.csr_matrix  # users x items, 1 per relevant test pair among the candidates
    test: pd.DataFrame  # user, item, rating (original ids): what dmf.evaluate reads
    threshold: float | None  # relevance threshold on test ratings (None: every test pair)
    info: dict[str, Any] = field(default_factory=dict)


def holdout_per_user(
    df: pd.DataFrame, frac: float = 0.2, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``df`` per user: a seeded random ``frac`` of each user's rows goes to test.

    A user with ``n >= 2`` rows gives ``max(1, floor(frac * n))`` of them to the test
    set; a user with one row keeps it in training.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(df))
    shuffled = df.iloc[order]
    pos = shuffled.groupby("user", sort=False).cumcount().to_numpy()
    n = shuffled.groupby("user", sort=False)["user"].transform("size").to_numpy()
    n_test = np.where(n >= 2, np.maximum(1, np.floor(frac * n)), 0)
    is_test = pos < n_test
    return shuffled[~is_test].sort_index(), shuffled[is_test].sort_index()


def make_split(
    name: str,
    description: str,
    train: pd.DataFrame,
    test: pd.DataFrame,
    threshold: float | None,
) -> Split:
    """Codes from the training data; test pairs of unseen users/items are never scored."""
    users = pd.Index(np.sort(train["user"].unique()))
    items = pd.Index(np.sort(train["item"].unique()))
    shape = (len(users), len(items))
    u = users.get_indexer(train["user"])
    i = items.get_indexer(train["item"])
    ones = np.ones(len(train))
    inter = sp.csr_matrix((ones, (u, i)), shape=shape)
    conf = sp.csr_matrix((train["value"].to_numpy(np.float64), (u, i)), shape=shape)
    tu = users.get_indexer(test["user"])
    ti = items.get_indexer(test["item"])
    rel = (tu >= 0) & (ti >= 0)
    if threshold is not None:
        rel &= test["rating"].to_numpy() >= threshold
    relevant = sp.csr_matrix((np.ones(int(rel.sum())), (tu[rel], ti[rel])), shape=shape)
    relevant = relevant - relevant.multiply(inter)  # a training item is never a candidate
    relevant.eliminate_zeros()
    info = {
        "n_users": shape[0],
        "n_items": shape[1],
        "n_train": len(train),
        "n_test": len(test),
        "n_test_relevant": int(relevant.nnz),
        "n_users_evaluated": int((np.diff(relevant.indptr) > 0).sum()),
    }
    return Split(
        name, description, users, items, train, inter, conf, relevant, test, threshold, info
    )


def load_ml100k(home: Path) -> Split:
    cols = ["user", "item", "rating", "timestamp"]
    read = {
        p: pd.read_csv(home / "ml-100k" / f"u1.{p}", sep="\t", names=cols) for p in ("base", "test")
    }
    train = read["base"].assign(value=1.0)
    return make_split(
        "ml100k",
        "MovieLens 100K, official u1 split (80,000 / 20,000 ratings); relevant: rating >= 4",
        train,
        read["test"],
        4.0,
    )


def load_lastfm(home: Path, values: str = "log1p", seed: int = 0) -> Split:
    df = pd.read_csv(
        home / "lastfm-2k" / "user_artists.dat", sep="\t", names=["user", "item", "plays"]
    )
    df["rating"] = df["plays"].astype(np.float64)
    df["value"] = {"log1p": np.log1p, "plays": np.asarray, "binary": np.sign}[values](df["rating"])
    train, test = holdout_per_user(df, 0.2, seed)
    return make_split(
        "lastfm",
        f"Last.fm 2K play counts ({len(df):,} pairs), per-user 20 % holdout (seed {seed}); "
        f"confidence {values}(plays); relevant: every held-out artist",
        train,
        test,
        None,
    )


# ------------------------------------------------------------ the one metric
def topn_metrics(score: Scorer, split: Split, k: int = K, chunk: int = 512) -> dict[str, Any]:
    """Precision, recall and NDCG@k of ``score`` on ``split`` (see the module docstring)."""
    rel = split.relevant
    mask = split.interactions
    n_rel = np.diff(rel.indptr)
    todo = np.nonzero(n_rel > 0)[0]
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(discount)
    sums = np.zeros(3)
    for c0 in range(0, len(todo), chunk):
        rows = todo[c0 : c0 + chunk]
        s = np.asarray(score(rows), dtype=np.float32).copy()
        m = mask[rows].tocoo()
        s[m.row, m.col] = -np.inf
        s[np.isnan(s)] = -np.inf
        top = np.argsort(-s, axis=1, kind="stable")[:, :k]  # stable: ties to the lower code
        ok = np.take_along_axis(s, top, axis=1) > -np.inf
        hit = np.asarray(rel[rows][np.arange(len(rows))[:, None], top].todense()) > 0
        hit &= ok
        nr = n_rel[rows]
        sums[0] += (hit.sum(1) / k).sum()
        sums[1] += (hit.sum(1) / nr).sum()
        sums[2] += ((hit * discount).sum(1) / ideal[np.minimum(nr, k) - 1]).sum()
    n = len(todo)
    return {
        f"precision@{k}": sums[0] / n,
        f"recall@{k}": sums[1] / n,
        f"ndcg@{k}": sums[2] / n,
        "n_users": n,
    }


# ---------------------------------------------------------------- the models
def ease_fit(X: sp.csr_matrix, lam: float, dtype: Any = np.float64) -> np.ndarray:
    """EASE item weights (Steck 2019): ``B = I - P / diag(P)``, ``P = (X'X + lam I)^-1``.

    Closed form with the zero-diagonal constraint; the Gram matrix is inverted in
    place by Cholesky (``potrf``/``potri``) so a 17,632-item catalogue needs one
    dense matrix, not three.
    """
    n = X.shape[1]
    gram = (X.T @ X).tocoo()
    G = np.zeros((n, n), dtype=dtype)
    G[gram.row, gram.col] = gram.data
    G[np.arange(n), np.arange(n)] += lam
    potrf, potri = (
        (lapack.dpotrf, lapack.dpotri) if G.dtype == np.float64 else (lapack.spotrf, lapack.spotri)
    )
    # G is symmetric: its transpose is the same matrix in Fortran order, which LAPACK
    # overwrites in place; the factor's "upper" triangle is G's lower one.
    c, info = potrf(G.T, lower=0, overwrite_a=1, clean=0)
    if info != 0:
        raise ArithmeticError(f"EASE Gram matrix not positive definite (info {info})")
    P, info = potri(c, lower=0, overwrite_c=1)
    if info != 0 or not np.shares_memory(P, G):
        raise ArithmeticError(f"EASE inverse failed (info {info})")
    step = 1024
    for r0 in range(0, n, step):  # mirror the lower triangle, a block of rows at a time
        r1 = min(n, r0 + step)
        G[r0:r1, r1:] = G[r1:, r0:r1].T
        blk = G[r0:r1, r0:r1]
        G[r0:r1, r0:r1] = np.tril(blk) + np.tril(blk, -1).T
    d = np.diag(G).copy()
    G /= -d[None, :]
    G[np.arange(n), np.arange(n)] = 0.0
    return G


def timed(fit: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fit(*args, **kwargs)
    return out, time.perf_counter() - t0


def popular_scorer(split: Split) -> tuple[Scorer, float]:
    counts, secs = timed(lambda: np.asarray(split.interactions.sum(axis=0)).ravel())
    return (lambda rows: np.broadcast_to(counts, (len(rows), len(counts)))), secs


def ease_scorer(split: Split, lam: float) -> tuple[Scorer, float]:
    dtype = np.float64 if split.interactions.shape[1] <= 5000 else np.float32
    B, secs = timed(ease_fit, split.interactions, lam, dtype)
    X = split.interactions.astype(dtype)
    return (lambda rows: X[rows] @ B), secs


def dmf_ratings(split: Split, kind: str) -> dmf.Ratings:
    """``interactions`` (value 1), ``confidence`` (the split's value) or ``ratings``."""
    col = {"interactions": None, "confidence": "value", "ratings": "rating"}[kind]
    df = split.train if col is None else split.train[["user", "item", col]]
    return dmf.from_pandas(df[["user", "item"]] if col is None else df, rating=col)


def dmf_scorer(model: Any, split: Split) -> Scorer:
    rows_of = model._user_codes(split.users)
    cols_of = model._item_codes(split.items)
    assert (rows_of >= 0).all() and (cols_of >= 0).all(), "dmf model lost training ids"
    return lambda rows: model._score_users(rows_of[rows])[:, cols_of]


def dmf_models(data: str) -> list[tuple[str, str, str, Any]]:
    """(row name, settings, train kind, estimator factory) of the dmf models present."""
    implicit_train = "interactions" if data == "ml100k" else "confidence"
    rating_train = "ratings" if data == "ml100k" else "confidence"
    out = [
        ("dmf ALS(implicit=True)", "defaults", implicit_train, lambda: dmf.ALS(implicit=True)),
        ("dmf SGD", "defaults (rating model)", rating_train, dmf.SGD),
        ("dmf Baseline", "defaults (rating model)", rating_train, dmf.Baseline),
    ]
    for name in ("Popular", "BPR"):
        cls = getattr(dmf, name, None)
        if cls is not None:
            out.append((f"dmf {name}", "defaults", "interactions", cls))
    return out


def warm_up() -> None:
    """Compile dmf's numba kernels on tiny data so no fit time below includes the JIT."""
    tiny = dmf.testing.random_ratings(n_users=40, n_items=30)
    for _, _, _, make in dmf_models("ml100k"):
        make().fit(tiny)


def implicit_rows(split: Split, grid: bool) -> list[dict[str, Any]]:
    try:
        import implicit
        from implicit.cpu.als import AlternatingLeastSquares
        from implicit.cpu.bpr import BayesianPersonalizedRanking
        from implicit.nearest_neighbours import CosineRecommender
        from threadpoolctl import threadpool_limits
    except ImportError:
        return []
    version = implicit.__version__
    conf = split.confidence.tocsr().astype(np.float32)
    inter = split.interactions.tocsr().astype(np.float32)

    def factor_run(make: Callable[[], Any], data: sp.csr_matrix) -> tuple[Scorer, float]:
        model = make()
        with threadpool_limits(1, "blas"):  # implicit's own threads; BLAS ones would fight
            _, secs = timed(model.fit, data, show_progress=False)
        U, V = model.user_factors, model.item_factors
        return (lambda rows: U[rows] @ V.T), secs

    rows = []

    def add(name: str, settings: str, scorer: Scorer, secs: float) -> dict[str, Any]:
        row = {"model": name, "library": f"implicit {version}", "settings": settings}
        row.update(fit_s=secs, **topn_metrics(scorer, split))
        rows.append(row)
        return row

    sc, secs = factor_run(lambda: AlternatingLeastSquares(random_state=0), conf)
    add("implicit ALS", "defaults (100 factors, reg 0.01, alpha 1, 15 it.)", sc, secs)
    if grid:

        def als(reg: float, alpha: float) -> tuple[Scorer, float]:
            make = partial(AlternatingLeastSquares, factors=64, regularization=reg, alpha=alpha,
                           iterations=15, random_state=0)  # fmt: skip
            return factor_run(make, conf)

        best = best_of_grid(split, als, "64 factors, reg {reg}, alpha {alpha}, 15 it.")
        rows.append({"model": "implicit ALS, best of grid (test)", "library": rows[0]["library"],
                     **best})  # fmt: skip
    sc, secs = factor_run(lambda: BayesianPersonalizedRanking(random_state=0), inter)
    add("implicit BPR", "defaults (100 factors, lr 0.01, reg 0.01, 100 it.)", sc, secs)
    knn = CosineRecommender(K=20)
    _, secs = timed(knn.fit, inter, show_progress=False)
    sim = knn.similarity.tocsr()
    add("implicit item-kNN (cosine)", "K 20", lambda r: (inter[r] @ sim).toarray(), secs)
    return rows


def lenskit_rows(split: Split) -> list[dict[str, Any]]:
    """LensKit's rows (:mod:`ranking_lenskit`); ``[]`` when LensKit does not import."""
    return [{"model": m, "library": lib, "settings": s, "fit_s": secs, **topn_metrics(sc, split)}
            for m, lib, s, sc, secs in ranking_lenskit.scorers(split)]  # fmt: skip


# ------------------------------------------------------------------ one run
def run(split: Split, grid: bool) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    lib = f"dmf {dmf.__version__}"
    sc, secs = popular_scorer(split)
    rows.append({"model": "most popular", "library": "numpy", "settings": "training counts",
                 "fit_s": secs, **topn_metrics(sc, split)})  # fmt: skip
    ease = []
    for lam in EASE_LAMBDAS[split.name]:
        sc, secs = ease_scorer(split, lam)
        ease.append({"lambda": lam, "fit_s": secs, **topn_metrics(sc, split)})
        print(f"  EASE lambda {lam}: {ease[-1]}", file=sys.stderr)
    best = max(ease, key=lambda r: r[f"precision@{K}"])
    rows.append({"model": "EASE, best lambda (test)", "library": "numpy",
                 "settings": f"lambda {best['lambda']} of {list(EASE_LAMBDAS[split.name])}",
                 **{k: v for k, v in best.items() if k != "lambda"}})  # fmt: skip
    check = None
    for name, settings, kind, make in dmf_models(split.name):
        train = dmf_ratings(split, kind)
        model, secs = timed(make().fit, train)
        sc = dmf_scorer(model, split)
        m = topn_metrics(sc, split)
        rows.append(
            {
                "model": name,
                "library": lib,
                "settings": f"{settings}; trains on {kind}",
                "fit_s": secs,
                **m,
            }
        )
        print(f"  {name}: {rows[-1]}", file=sys.stderr)
        if name.startswith("dmf ALS"):
            check = cross_check(model, split, train, m)
        if grid and name.startswith("dmf ALS"):
            rows.append(dmf_grid(split, train, lib))
    rows += implicit_rows(split, grid) + lenskit_rows(split)
    return {
        "description": split.description,
        **split.info,
        "rows": rows,
        "ease_grid": ease,
        "cross_check": check,
    }


def best_of_grid(
    split: Split, fit: Callable[[float, float], tuple[Scorer, float]], settings: str
) -> dict[str, Any]:
    """The reg x alpha point with the best test precision (an oracle, labelled as such)."""
    best: dict[str, Any] = {f"precision@{K}": -1.0}
    for reg in GRID_REG:
        for alpha in GRID_ALPHA:
            sc, secs = fit(reg, alpha)
            m = topn_metrics(sc, split)
            if m[f"precision@{K}"] > best[f"precision@{K}"]:
                best = {"settings": settings.format(reg=reg, alpha=alpha), "fit_s": secs, **m}
    return best


def dmf_grid(split: Split, train: dmf.Ratings, lib: str) -> dict[str, Any]:
    def als(reg: float, alpha: float) -> tuple[Scorer, float]:
        # the implicit library's model (Hu et al.) over its grid, not dmf's top-N defaults
        est = dmf.ALS(
            implicit=True, rank=64, reg=reg, alpha=alpha, max_iter=15, unobserved_weight=1.0,
            weighted_reg=False, init_scale=0.1,
        )  # fmt: skip
        model, secs = timed(est.fit, train)
        return dmf_scorer(model, split), secs

    best = best_of_grid(split, als, "rank 64, reg {reg}, alpha {alpha}, 15 it.")
    return {"model": "dmf ALS(implicit=True), best of grid (test)", "library": lib, **best}


def cross_check(
    model: Any, split: Split, train: dmf.Ratings, mine: dict[str, Any]
) -> dict[str, Any]:
    """``dmf.evaluate`` on the same model and protocol must give this script's figures."""
    names = [f"precision@{K}", f"recall@{K}", f"ndcg@{K}"]
    test = dmf.from_pandas(split.test[["user", "item", "rating"]])
    theirs = dmf.evaluate(model, test, names, train=train, relevance_threshold=split.threshold)
    for n in names:
        assert abs(theirs[n] - mine[n]) < 1e-9, (n, theirs[n], mine[n])
    assert theirs["n_users"] == mine["n_users"], (theirs["n_users"], mine["n_users"])
    return {
        "model": "dmf ALS(implicit=True)",
        **{n: theirs[n] for n in names},
        "n_users": theirs["n_users"],
        "equal": True,
    }


# ----------------------------------------------------------------- output
def table(result: dict[str, Any]) -> str:
    lines = [
        f"**{result['description']}**: {result['n_users']:,} users x {result['n_items']:,} "
        f"items, {result['n_users_evaluated']:,} users evaluated",
        "",
        "| model | library | settings | fit s | precision@10 | recall@10 | NDCG@10 |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in sorted(result["rows"], key=lambda r: r.get(f"precision@{K}", -1)):
        if f"precision@{K}" not in r:
            continue
        lines.append(
            f"| {r['model']} | {r['library']} | {r['settings']} | {r['fit_s']:.2f} | "
            f"{r[f'precision@{K}']:.3f} | {r[f'recall@{K}']:.3f} | {r[f'ndcg@{K}']:.3f} |"
        )
    return "\n".join(lines)


#: Short names for the rows the pages quote in prose (README.md).
QUOTED = {
    "ials": "dmf ALS(implicit=True)",
    "bpr": "dmf BPR",
    "ease": "EASE, best lambda (test)",
    "implicit_grid": "implicit ALS, best of grid (test)",
    "lenskit_itemknn": "LensKit ItemKNN",
    "popular": "most popular",
}


def figures(data: dict[str, Any]) -> dict[str, str]:
    """What the pages show of ``docs/_data/ranking_peers.json`` (tools/render_docs.py)."""
    out = {}
    for name, result in data["data"].items():
        out[name] = table(result)
        by_model = {r["model"]: r for r in result["rows"] if f"precision@{K}" in r}
        for key, model in QUOTED.items():
            if model in by_model:
                out[f"{name}.{key}"] = f"{by_model[model][f'precision@{K}']:.3f}"
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="ml100k,lastfm", help="comma-separated: ml100k, lastfm")
    ap.add_argument("--json", type=Path, help="write the results to this JSON file")
    ap.add_argument("--grid", action="store_true", help="also the reg x alpha grid of implicit ALS")
    ap.add_argument("--lastfm-values", default="log1p", choices=("log1p", "plays", "binary"))
    args = ap.parse_args(argv)
    home = Path(os.environ.get("DMF_DATA", ""))
    if not (home / "ml-100k").is_dir():
        raise SystemExit("set DMF_DATA to the folder holding ml-100k/ and lastfm-2k/")
    load = {"ml100k": load_ml100k, "lastfm": lambda h: load_lastfm(h, args.lastfm_values)}
    names = [n.strip() for n in args.data.split(",") if n.strip()]
    bad = [n for n in names if n not in load]
    if bad:
        raise SystemExit(f"unknown data set(s) {bad}; choose from {sorted(load)}")
    warm_up()
    out: dict[str, Any] = {
        "command": "python tools/bench/ranking_peers.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "load_before": os.getloadavg(),
        "data": {},
    }
    for name in names:
        print(f"{name} ...", file=sys.stderr)
        result = run(load[name](home), args.grid)
        out["data"][name] = result
        print(table(result) + "\n")
    out["load_after"] = os.getloadavg()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
