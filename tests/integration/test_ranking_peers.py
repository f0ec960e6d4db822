"""tools/bench/ranking_peers.py: its one metric code, its EASE and its split, on small data."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dmf

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools" / "bench"))
rp = pytest.importorskip("ranking_peers")


def _frames(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    n = 900
    df = pd.DataFrame(
        {"user": rng.integers(0, 60, n), "item": rng.integers(0, 45, n) * 3 + 7}
    ).drop_duplicates(["user", "item"])
    df["rating"] = rng.integers(1, 6, len(df)).astype(float)
    df["value"] = 1.0
    train, test = rp.holdout_per_user(df, 0.25, seed)
    return train, test


def _brute(scores: np.ndarray, split: rp.Split, k: int) -> dict[str, float]:
    """Per user in plain Python: sort candidates by (-score, code), count hits."""
    train = split.interactions.toarray() > 0
    rel = split.relevant.toarray() > 0
    p = r = g = 0.0
    n = 0
    for u in range(train.shape[0]):
        relevant = set(np.nonzero(rel[u])[0])
        if not relevant:
            continue
        cands = [i for i in range(train.shape[1]) if not train[u, i]]
        top = sorted(cands, key=lambda i: (-scores[u, i], i))[:k]
        hits = [i in relevant for i in top]
        p += sum(hits) / k
        r += sum(hits) / len(relevant)
        dcg = sum(1 / np.log2(rank + 2) for rank, h in enumerate(hits) if h)
        g += dcg / sum(1 / np.log2(rank + 2) for rank in range(min(k, len(relevant))))
        n += 1
    return {"precision@5": p / n, "recall@5": r / n, "ndcg@5": g / n, "n_users": n}


def test_holdout_per_user_is_seeded_and_per_user() -> None:
    train, test = _frames()
    again = _frames()
    pd.testing.assert_frame_equal(train, again[0])
    both = pd.concat([train, test])
    assert len(both) == len(both.drop_duplicates(["user", "item"]))
    n = both.groupby("user").size()
    n_test = test.groupby("user").size().reindex(n.index, fill_value=0)
    expected = np.where(n >= 2, np.maximum(1, np.floor(0.25 * n)), 0)
    np.testing.assert_array_equal(n_test.to_numpy(), expected)


def test_topn_metrics_equal_brute_force_with_ties() -> None:
    train, test = _frames()
    split = rp.make_split("t", "", train, test, 3.0)
    rng = np.random.default_rng(1)
    # few distinct values: many ties, which go to the lower item code
    scores = rng.integers(0, 4, split.interactions.shape).astype(np.float32)
    mine = rp.topn_metrics(lambda rows: scores[rows], split, k=5, chunk=7)
    ref = _brute(scores, split, 5)
    assert mine["n_users"] == ref["n_users"] > 0
    for name in ("precision@5", "recall@5", "ndcg@5"):
        assert mine[name] == pytest.approx(ref[name], abs=1e-12)


def test_topn_metrics_equal_dmf_evaluate() -> None:
    train, test = _frames(2)
    split = rp.make_split("t", "", train, test, 4.0)
    ratings = rp.dmf_ratings(split, "interactions")
    model = dmf.ALS(implicit=True, rank=8, max_iter=3).fit(ratings)
    mine = rp.topn_metrics(rp.dmf_scorer(model, split), split)
    check = rp.cross_check(model, split, ratings, mine)
    assert check["equal"] and check["n_users"] == mine["n_users"] > 0


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ease_equals_dense_inverse(dtype: type) -> None:
    train, test = _frames(3)
    X = rp.make_split("t", "", train, test, None).interactions
    lam = 5.0
    G = (X.T @ X).toarray() + lam * np.eye(X.shape[1])
    P = np.linalg.inv(G)
    B = np.eye(X.shape[1]) - P / np.diag(P)[None, :]
    got = rp.ease_fit(X, lam, dtype)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, B, atol=1e-4 if dtype == np.float32 else 1e-10)
    assert not np.diag(got).any()


def test_lenskit_rows_absent_without_lenskit() -> None:
    try:
        import lenskit  # noqa: F401
    except ImportError:
        train, test = _frames(4)
        assert rp.lenskit_rows(rp.make_split("t", "", train, test, 4.0)) == []
    else:
        pytest.skip("LensKit imports here: its rows are checked below")


def test_lenskit_scores_equal_its_own_scorers() -> None:
    """Dense scores over the split's codes equal LensKit's own per-user calls (shuffled ids)."""
    pytest.importorskip("lenskit")
    from lenskit.als import ImplicitMFScorer
    from lenskit.data import ItemList, RecQuery, from_interactions_df
    from lenskit.knn import ItemKNNScorer
    from lenskit.training import TrainingOptions

    train, test = _frames(5)
    split = rp.make_split("t", "", train, test, 4.0)
    (mf_name, *_, mf_score, _), (knn_name, *_, knn_score, _) = rp.ranking_lenskit.scorers(split)
    assert (mf_name, knn_name) == ("LensKit ImplicitMF", "LensKit ItemKNN")
    # LensKit's models trained on a frame in another row order: same vocabularies, same fits
    data = from_interactions_df(train[["user", "item"]].sample(frac=1.0, random_state=1))
    mf = ImplicitMFScorer(embedding_size=64)
    mf.train(data, TrainingOptions(rng=0))
    knn = ItemKNNScorer(max_nbrs=20, feedback="implicit")
    knn.train(data, TrainingOptions())
    rows = np.arange(len(split.users))
    got_mf, got_knn = mf_score(rows), knn_score(rows)
    X = split.interactions.tocsr()
    for u in rows:
        cands = ItemList(item_ids=split.items.to_numpy())
        want = mf(RecQuery(user_id=split.users[u]), cands).scores("numpy")
        np.testing.assert_allclose(got_mf[u], want, rtol=1e-5, atol=1e-6)
        hist = ItemList(item_ids=split.items[X.indices[X.indptr[u] : X.indptr[u + 1]]].to_numpy())
        want = knn(RecQuery(user_id=split.users[u], history_items=hist), cands).scores("numpy")
        np.testing.assert_allclose(got_knn[u], want, rtol=1e-6, equal_nan=True)
    assert np.isfinite(got_knn).any() and np.isfinite(got_mf).all()
