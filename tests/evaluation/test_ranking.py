"""Ranking metrics: numba kernels and blocked evaluate() against brute-force numpy/pandas."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import dmf
from dmf.evaluation._ranking import parse_ranking_metric
from dmf.kernels._ranking import (
    RANK_STATS,
    rank_rows,
    reference_rank_rows,
    reference_topk,
    topk_rows,
)
from dmf.testing import random_frame

ALL = [
    "precision@5",
    "recall@5",
    "ndcg@5",
    "map@5",
    "mrr@5",
    "hit_rate@5",
    "precision@30",
    "ndcg@30",
    "map@30",
    "auc",
    "coverage@5",
]


# ---------------------------------------------------------------- kernels
def _random_case(seed: int, n_rows: int = 40, m: int = 25):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, (n_rows, m)).astype(np.float32)  # many ties
    scores[rng.random((n_rows, m)) < 0.02] = np.nan
    cand_ok = rng.random(m) < 0.85
    excluded = [
        set(np.nonzero(rng.random(m) < rng.uniform(0, 0.9))[0].tolist()) for _ in range(n_rows)
    ]
    relevant = [
        set(np.nonzero(rng.random(m) < rng.uniform(0, 0.4))[0].tolist()) for _ in range(n_rows)
    ]
    return scores, cand_ok, excluded, relevant


def _csr(sets):
    indptr = np.zeros(len(sets) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(s) for s in sets])
    indices = np.array([j for s in sets for j in sorted(s)], dtype=np.int32)
    return indptr, indices


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 3, 30])
def test_topk_kernel_matches_full_sort(seed, k):
    scores, cand_ok, excluded, _ = _random_case(seed)
    ptr, idx = _csr(excluded)
    n = len(scores)
    items = np.empty((n, k), np.int64)
    vals = np.empty((n, k), np.float32)
    counts = np.empty(n, np.int64)
    topk_rows(scores, 0, k, cand_ok, ptr, idx, items, vals, counts)
    ref = reference_topk(scores, k, cand_ok, excluded)
    for r in range(n):
        assert counts[r] == len(ref[r])
        assert items[r, : counts[r]].tolist() == [j for j, _ in ref[r]]
        assert (items[r, counts[r] :] == -1).all()


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_rank_kernel_matches_reference(seed):
    scores, cand_ok, excluded, relevant = _random_case(seed)
    ks = np.array([1, 4, 30], dtype=np.int64)
    ex_ptr, ex_idx = _csr(excluded)
    rel_ptr, rel_idx = _csr(relevant)
    n = len(scores)
    stats = np.empty((n, len(ks), len(RANK_STATS)))
    tops = np.empty((n, 30), np.int64)
    nrel = np.empty(n, np.int64)
    auc = np.empty(n)
    rank_rows(
        scores, 0, ks, cand_ok, ex_ptr, ex_idx, rel_ptr, rel_idx, True, stats, tops, nrel, auc
    )
    for c, k in enumerate(ks):
        ref = reference_rank_rows(scores, int(k), cand_ok, excluded, relevant)
        for r in range(n):
            if ref[r] is None:
                assert nrel[r] == 0 and np.isnan(stats[r, c]).all()
                continue
            assert nrel[r] == ref[r]["n_relevant"]
            for q, name in enumerate(RANK_STATS):
                assert stats[r, c, q] == pytest.approx(ref[r][name], abs=1e-9), (r, k, name)
            if np.isnan(ref[r]["auc"]):
                assert np.isnan(auc[r])
            else:
                assert auc[r] == pytest.approx(ref[r]["auc"], abs=1e-9)
    assert (nrel == 0).any() and (nrel > 0).any()


# ------------------------------------------------- brute force over pandas
def _factor_model(train: dmf.Ratings, rank: int = 3, seed: int = 0) -> dmf.Recommender:
    """A Baseline with hand-set small-integer factors: exact float32 scores, many ties."""
    with warnings.catch_warnings():  # the biases of all-ones data are overwritten below
        warnings.simplefilter("ignore", dmf.DMFWarning)
        model = dmf.Baseline(max_iter=1).fit(train)
    rng = np.random.default_rng(seed)
    model.global_mean_ = 3.5
    model.user_bias_ = (rng.integers(-2, 3, model.users_.size) / 2).astype(np.float32)
    model.item_bias_ = (rng.integers(-2, 3, model.items_.size) / 2).astype(np.float32)
    model.user_factors_ = rng.integers(-1, 2, (model.users_.size, rank)).astype(np.float32)
    model.item_factors_ = rng.integers(-1, 2, (model.items_.size, rank)).astype(np.float32)
    return model


def _dense_scores(model) -> np.ndarray:
    s = (
        np.float64(model.global_mean_)
        + model.user_bias_[:, None].astype(np.float64)
        + model.item_bias_[None, :].astype(np.float64)
    )
    if model.user_factors_ is not None:
        s = s + model.user_factors_.astype(np.float64) @ model.item_factors_.T.astype(np.float64)
    return s


def _brute_force(model, train_df, test_df, metrics, threshold=None, implicit=False):
    """Every metric by plain pandas/numpy loops over users, from original ids."""
    scores = _dense_scores(model)
    seen_item = model.item_counts_ > 0
    seen_user = model.user_counts_ > 0
    ucode = dict(zip(model.users_, range(len(model.users_)), strict=True))
    icode = dict(zip(model.items_, range(len(model.items_)), strict=True))
    train_items = train_df.groupby("user")["item"].apply(lambda s: {icode.get(i, -1) for i in s})
    per_user = {}
    skipped_cold = skipped_norel = 0
    recommended = {}
    for user, grp in test_df.groupby("user"):
        u = ucode.get(user, -1)
        if u < 0 or not seen_user[u]:
            skipped_cold += 1
            continue
        masked = train_items.get(user, set())
        cands = [j for j in range(len(seen_item)) if seen_item[j] and j not in masked]
        rel_rows = grp if (implicit or threshold is None) else grp[grp["rating"] >= threshold]
        rel = {icode.get(i, -1) for i in rel_rows["item"]} & set(cands)
        if not rel:
            skipped_norel += 1
            continue
        order = sorted(cands, key=lambda j: (-scores[u, j], j))
        vals = {}
        for name in metrics:
            if name == "auc":
                neg = [j for j in cands if j not in rel]
                if neg:
                    vals[name] = np.mean(
                        [
                            1.0
                            if scores[u, i] > scores[u, j]
                            else 0.5
                            if scores[u, i] == scores[u, j]
                            else 0.0
                            for i in rel
                            for j in neg
                        ]
                    )
                continue
            base, k = name.split("@")
            k = int(k)
            top = order[:k]
            recommended.setdefault(k, set()).update(top)
            flags = np.array([j in rel for j in top], dtype=float)
            hits = flags.sum()
            ranks = np.arange(1, len(top) + 1)
            if base == "precision":
                vals[name] = hits / k
            elif base == "recall":
                vals[name] = hits / len(rel)
            elif base == "ndcg":
                idcg = (1 / np.log2(np.arange(2, min(k, len(rel)) + 2))).sum()
                vals[name] = (flags / np.log2(ranks + 1)).sum() / idcg
            elif base == "map":
                prec_at = np.cumsum(flags) / ranks
                vals[name] = (prec_at * flags).sum() / min(k, len(rel))
            elif base == "mrr":
                vals[name] = 1 / ranks[flags > 0][0] if hits else 0.0
            elif base == "hit_rate":
                vals[name] = float(hits > 0)
        per_user[user] = vals
    out = {}
    frame = pd.DataFrame.from_dict(per_user, orient="index")
    for name in metrics:
        if name.startswith("coverage@"):
            k = int(name.split("@")[1])
            out[name] = len(recommended.get(k, set())) / seen_item.sum()
        else:
            out[name] = frame[name].mean()
    out["n_users"] = len(per_user)
    out["n_users_skipped_cold"] = skipped_cold
    out["n_users_skipped_no_relevant"] = skipped_norel
    return out, frame


@pytest.fixture(scope="module")
def case():
    df = random_frame(n_users=150, n_items=60, density=0.15, seed=3)
    train = dmf.from_pandas(df, chunk_nnz=300)
    train, test = dmf.split.random(train, test_size=0.3, seed=1)
    model = _factor_model(train)
    return model, train, test


def test_evaluate_matches_brute_force(case):
    model, train, test = case
    got = dmf.evaluate(model, test, train=train, metrics=["rmse", *ALL], relevance_threshold=3.5)
    want, _ = _brute_force(model, train.to_pandas(), test.to_pandas(), ALL, threshold=3.5)
    for name in ALL:
        assert got[name] == pytest.approx(want[name], abs=1e-6), name
    for c in ("n_users", "n_users_skipped_cold", "n_users_skipped_no_relevant"):
        assert got[c] == want[c], c
    assert want["n_users_skipped_no_relevant"] > 0
    assert got["n"] == test.nnz and "rmse" in got


@pytest.mark.parametrize("chunk", [None, 250, 40])
def test_blocking_does_not_change_results(case, chunk):
    """1, 3 and 17 test blocks, a test set with its own id maps and blocks, same values."""
    model, train, test = case
    test_df = test.to_pandas()
    base = dmf.evaluate(model, test, train=train, metrics=ALL, relevance_threshold=3.5)
    n_blocks = {None: 1, 250: 3, 40: 17}[chunk]
    chunk_nnz = test.nnz if chunk is None else -(-test.nnz // n_blocks)
    own = dmf.from_pandas(test_df, chunk_nnz=chunk_nnz)
    assert own.n_blocks == n_blocks
    own_train = dmf.from_pandas(train.to_pandas(), chunk_nnz=max(1, train.nnz // 5))
    got = dmf.evaluate(model, own, train=own_train, metrics=ALL, relevance_threshold=3.5)
    for name in ALL:
        assert got[name] == pytest.approx(base[name], abs=1e-12), name
    assert got["n_users"] == base["n_users"]


def test_test_dataframe_with_cold_users_and_items(case):
    model, train, test = case
    test_df = test.to_pandas()
    extra = pd.DataFrame(
        {"user": [10_001, 10_001, 0], "item": [1, 2, 9_999], "rating": [5.0, 4.0, 5.0]}
    )
    df = pd.concat([test_df, extra], ignore_index=True)
    got = dmf.evaluate(model, df, train=train, metrics=ALL, relevance_threshold=3.5)
    want, _ = _brute_force(model, train.to_pandas(), df, ALL, threshold=3.5)
    for name in ALL:
        assert got[name] == pytest.approx(want[name], abs=1e-6), name
    assert got["n_users_skipped_cold"] == 1 == want["n_users_skipped_cold"]
    base = dmf.evaluate(model, test_df, train=train, metrics=["ndcg@5"])
    assert got["n_ratings_unseen_item"] == base["n_ratings_unseen_item"] + 1
    with pytest.raises(dmf.UnknownIdError, match="unseen in training"):
        dmf.evaluate(model, df, train=train, metrics=["ndcg@5"], cold_start="raise")


def test_per_user_values(case):
    model, train, test = case
    names = [m for m in ALL if not m.startswith("coverage")]
    pu = dmf.evaluate(
        model,
        test,
        train=train,
        metrics=["rmse", "mae", *names],
        relevance_threshold=3.5,
        per_user=True,
    )
    _, frame = _brute_force(model, train.to_pandas(), test.to_pandas(), names, threshold=3.5)
    assert set(pu.index) == set(test.to_pandas()["user"])
    evaluated = pu.dropna(subset=["ndcg@5"])
    assert set(evaluated.index) == set(frame.index)
    for name in names:
        a = evaluated[name].sort_index().to_numpy()
        b = frame[name].sort_index().to_numpy()
        np.testing.assert_allclose(a, b, atol=1e-6, err_msg=name)
    # per-user rmse/mae against pandas
    df = test.to_pandas()
    df["pred"] = model.predict(df["user"], df["item"])
    err = (df["pred"] - df["rating"]).groupby(df["user"])
    np.testing.assert_allclose(
        pu["rmse"].sort_index(),
        np.sqrt(err.apply(lambda e: (e**2).mean())).sort_index(),
        atol=1e-6,
    )
    np.testing.assert_allclose(
        pu["mae"].sort_index(), err.apply(lambda e: e.abs().mean()).sort_index(), atol=1e-6
    )
    agg = dmf.evaluate(model, test, train=train, metrics=names, relevance_threshold=3.5)
    for name in names:
        assert pu[name].mean() == pytest.approx(agg[name], abs=1e-9)


def test_no_train_masks_nothing_and_threshold_none_means_all_relevant(case):
    model, _, test = case
    got = dmf.evaluate(model, test, metrics=["ndcg@5", "recall@5", "auc"])
    empty_train = pd.DataFrame({"user": [-1], "item": [-1], "rating": [1.0]})
    want, _ = _brute_force(model, empty_train, test.to_pandas(), ["ndcg@5", "recall@5", "auc"])
    for name in ("ndcg@5", "recall@5", "auc"):
        assert got[name] == pytest.approx(want[name], abs=1e-6)


def test_implicit_every_interaction_is_relevant():
    df = random_frame(n_users=80, n_items=30, density=0.2, seed=5)[["user", "item"]]
    r = dmf.from_pandas(df, rating=None, chunk_nnz=100)
    assert r.implicit
    train, test = dmf.split.random(r, test_size=0.3, seed=0)
    model = _factor_model(train, seed=2)
    names = ["precision@3", "ndcg@3", "map@3", "auc"]
    got = dmf.evaluate(model, test, train=train, metrics=names)
    want, _ = _brute_force(model, train.to_pandas(), test.to_pandas(), names, implicit=True)
    for name in names:
        assert got[name] == pytest.approx(want[name], abs=1e-6)
    with pytest.raises(dmf.ParameterError, match="implicit"):
        dmf.evaluate(model, test, metrics=names, relevance_threshold=1.0)


def test_distributed_equals_threaded(case, client):
    model, train, test = case
    local = dmf.evaluate(model, test, train=train, metrics=["rmse", *ALL], relevance_threshold=3.5)
    with client.as_current():
        dist = dmf.evaluate(
            model, test, train=train, metrics=["rmse", *ALL], relevance_threshold=3.5
        )
    assert dist == pytest.approx(local, abs=1e-12)


def test_task_names_and_laziness(case):
    model, train, test = case
    lazy = dmf.evaluate(model, test, train=train, metrics=["ndcg@5", "rmse"], compute=False)
    names = {str(k) for k in dict(lazy.__dask_graph__())}
    assert any(n.startswith("eval-rank-block-") for n in names)
    assert any(n.startswith("eval-block-") for n in names)
    assert any(n.startswith("exclude-csr-") for n in names)
    assert lazy.compute()["ndcg@5"] >= 0


# ------------------------------------------------------------- bad input
def test_metric_names():
    assert parse_ranking_metric("ndcg@10") == ("ndcg", 10)
    assert parse_ranking_metric("auc") == ("auc", 0)
    assert parse_ranking_metric("rmse") is None


@pytest.mark.parametrize(
    "metric, match",
    [
        ("ndcg@0", "k=0"),
        ("ndcg", "needs a cut-off"),
        ("precision@x", "bad cut-off"),
        ("nope@5", "unknown metric"),
        ("f1", "unknown metric"),
    ],
)
def test_bad_metric_names(case, metric, match):
    model, train, test = case
    with pytest.raises(dmf.ParameterError, match=match):
        dmf.evaluate(model, test, train=train, metrics=[metric])


def test_no_common_ids_and_bad_arguments(case):
    model, _train, test = case
    foreign = pd.DataFrame({"user": [9_000, 9_001], "item": [8_000, 8_001], "rating": [4.0, 5.0]})
    with pytest.raises(dmf.RatingsError, match="shares no user"):
        dmf.evaluate(model, foreign, metrics=["ndcg@5"])
    with pytest.raises(dmf.RatingsError, match="train must be"):
        dmf.evaluate(model, test, train=[1, 2], metrics=["ndcg@5"])
    with pytest.raises(dmf.ParameterError, match="relevance_threshold"):
        dmf.evaluate(model, test, metrics=["ndcg@5"], relevance_threshold=float("nan"))
    with pytest.raises(dmf.ParameterError, match="per_user"):
        dmf.evaluate(model, test, metrics=["ndcg@5"], per_user="yes")
    with pytest.raises(dmf.RatingsError):
        dmf.evaluate(model, test.to_pandas().iloc[:0], metrics=["ndcg@5"])


def test_score_few_matches_blas():
    from dmf.kernels._ranking import reference_score_few, score_few

    rng = np.random.default_rng(0)
    users = rng.standard_normal((3, 66)).astype(np.float32)
    items = rng.standard_normal((500, 66)).astype(np.float32)
    np.testing.assert_allclose(
        score_few(users, items), reference_score_few(users, items), rtol=1e-5, atol=1e-5
    )


def test_score_users_few_and_many_agree(case):
    model, _, _ = case
    many = model._score_users(np.arange(20))
    few = np.vstack([model._score_users(np.array([u])) for u in range(20)])
    np.testing.assert_allclose(few, many, atol=1e-5)
    pairs = model._predict_codes(
        np.repeat(np.arange(20), model.items_.size), np.tile(np.arange(model.items_.size), 20)
    )
    np.testing.assert_allclose(many.ravel(), pairs, atol=1e-5)


@pytest.mark.parametrize("n_rel", [1, 3, 40, 300])
def test_auc_kernel_continuous_scores(n_rel):
    """AUC's bucketed counting against the pairwise definition, with and without ties."""
    rng = np.random.default_rng(n_rel)
    m = 1500
    scores = rng.standard_normal((4, m)).astype(np.float32)
    scores[1] = np.round(scores[1], 1)  # ties between relevant and non-relevant items
    scores[2, :] = 0.25  # all equal
    cand_ok = rng.random(m) < 0.95
    excluded = [set(rng.choice(m, 50, replace=False).tolist()) for _ in range(4)]
    relevant = [set(rng.choice(m, n_rel, replace=False).tolist()) for _ in range(4)]
    ex_ptr, ex_idx = _csr(excluded)
    rel_ptr, rel_idx = _csr(relevant)
    ks = np.array([5], dtype=np.int64)
    stats = np.empty((4, 1, len(RANK_STATS)))
    tops = np.empty((4, 5), np.int64)
    nrel = np.empty(4, np.int64)
    auc = np.empty(4)
    rank_rows(
        scores, 0, ks, cand_ok, ex_ptr, ex_idx, rel_ptr, rel_idx, True, stats, tops, nrel, auc
    )
    for r in range(4):
        s = scores[r].astype(np.float64)
        cands = [j for j in range(m) if cand_ok[j] and j not in excluded[r]]
        rel = np.array(sorted(set(cands) & relevant[r]))
        neg = np.array(sorted(set(cands) - relevant[r]))
        if len(rel) == 0:
            assert nrel[r] == 0
            continue
        diff = s[rel][:, None] - s[neg][None, :]
        want = ((diff > 0) + 0.5 * (diff == 0)).mean()
        assert auc[r] == pytest.approx(want, abs=1e-9)
