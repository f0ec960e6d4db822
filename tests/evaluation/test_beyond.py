"""novelty@k, diversity@k and baseline="popular" against brute-force references."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import dmf
from dmf.evaluation._beyond import popularity_ranks
from dmf.testing import random_frame


@pytest.fixture(scope="module")
def fitted():
    df = random_frame(n_users=50, n_items=30, seed=7)
    train_df = df.sample(frac=0.7, random_state=1)
    test_df = df.drop(train_df.index)
    train = dmf.from_pandas(train_df, chunk_nnz=200)
    model = dmf.ALS(implicit=True, rank=5, max_iter=4).fit(train)
    return model, train, train_df, test_df


def _brute_pop_rank(counts: dict, item) -> int:
    return 1 + sum(1 for c in counts.values() if c > counts[item])


def _brute_ild(items: list, factors: dict) -> float:
    def cos(a, b):
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        return 0.0 if na == 0 or nb == 0 else float(a @ b / (na * nb))

    pairs = [(i, j) for i, j in itertools.permutations(items, 2)]
    return sum(1 - cos(factors[i], factors[j]) for i, j in pairs) / len(pairs)


def test_popularity_ranks_share_the_best_rank_on_ties():
    ranks = popularity_ranks(np.array([5, 0, 7, 5, 1]))
    np.testing.assert_array_equal(ranks, [2, np.nan, 1, 2, 4])


def test_novelty_and_diversity_equal_brute_force(fitted):
    model, train, train_df, test_df = fitted
    k = 4
    got = dmf.evaluate(
        model, test_df, ["novelty@4", "diversity@4", "precision@4"], train=train,
        relevance_threshold=4.0, per_user=True,
    )  # fmt: skip
    counts = train_df.groupby("item").size().to_dict()
    factors = dict(zip(model.items_, model.item_factors_.astype(np.float64), strict=True))
    evaluated = got[got["n_relevant"] > 0].index
    assert len(evaluated) > 5
    recs = model.recommend(list(evaluated), k=k, exclude=train)
    nov, ild = [], []
    for user, lst in recs.groupby("user", sort=False)["item"]:
        items = lst.tolist()
        nov.append(np.mean([_brute_pop_rank(counts, i) for i in items]))
        ild.append(_brute_ild(items, factors))
        assert got.loc[user, "novelty@4"] == pytest.approx(nov[-1], abs=1e-12)
        assert got.loc[user, "diversity@4"] == pytest.approx(ild[-1], abs=1e-6)
    agg = dmf.evaluate(
        model, test_df, ["novelty@4", "diversity@4"], train=train, relevance_threshold=4.0
    )
    assert agg["novelty@4"] == pytest.approx(np.mean(nov), abs=1e-12)
    assert agg["diversity@4"] == pytest.approx(np.mean(ild), abs=1e-6)
    assert np.isnan(got.loc[got["n_relevant"] == 0, "novelty@4"]).all()


def test_baseline_popular_equals_a_popular_model(fitted):
    model, train, _, test_df = fitted
    names = ["precision@5", "ndcg@5", "novelty@5", "coverage@5"]
    got = dmf.evaluate(model, test_df, names, train=train, relevance_threshold=4.0,
                       baseline="popular")  # fmt: skip
    pop = dmf.Popular().fit(train)
    ref = dmf.evaluate(pop, test_df, names, train=train, relevance_threshold=4.0)
    mine = dmf.evaluate(model, test_df, names, train=train, relevance_threshold=4.0)
    for n in names:
        assert got[n] == mine[n]
        assert got[f"{n}_popular"] == pytest.approx(ref[n], abs=1e-12)
        assert got[f"{n}_lift"] == pytest.approx(mine[n] / ref[n], rel=1e-12)
    lazy = dmf.evaluate(model, test_df, names, train=train, relevance_threshold=4.0,
                        baseline="popular", compute=False)  # fmt: skip
    assert lazy.compute() == got


def test_bad_input(fitted):
    model, train, _, test_df = fitted
    base = dmf.Baseline().fit(train)
    with pytest.raises(dmf.ParameterError, match="diversity@k is measured on item factors"):
        dmf.evaluate(base, test_df, ["diversity@10"], train=train)
    with pytest.raises(dmf.ParameterError, match="name at least one ranking metric"):
        dmf.evaluate(model, test_df, ["rmse"], baseline="popular")
    with pytest.raises(dmf.ParameterError, match="keep per_user=False"):
        dmf.evaluate(model, test_df, ["ndcg@5"], baseline="popular", per_user=True)
    with pytest.raises(dmf.ParameterError, match="baseline"):
        dmf.evaluate(model, test_df, ["ndcg@5"], baseline="random")
    with pytest.raises(dmf.ParameterError, match="cut-off"):
        dmf.evaluate(model, test_df, ["novelty"])
