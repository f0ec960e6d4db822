"""Splits: id maps kept, partitions exact, reproducible by seed, unseen counts, validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import dmf
from dmf.testing import random_frame


@pytest.fixture(scope="module")
def ratings():
    df = random_frame(n_users=120, n_items=60, density=0.15, seed=11)
    df["ts"] = np.random.default_rng(0).integers(0, 10_000, len(df))
    return dmf.from_pandas(df, timestamp="ts", chunk_nnz=250)


def frame(r: dmf.Ratings) -> pd.DataFrame:
    return r.to_pandas(codes=True)


def pairs(r: dmf.Ratings) -> set[tuple[int, int]]:
    df = frame(r)
    return set(zip(df["user"].tolist(), df["item"].tolist(), strict=True))


def check_partition(r, train, test):
    assert train.users is r.users and test.items is r.items
    np.testing.assert_array_equal(train.row_edges, r.row_edges)
    np.testing.assert_array_equal(test.row_edges, r.row_edges)
    a, b = pairs(train), pairs(test)
    assert not (a & b)
    assert a | b == pairs(r)
    assert train.nnz + test.nnz == r.nnz


def reference_unseen(train, test):
    tr, te = frame(train), frame(test)
    new_u = ~te["user"].isin(tr["user"])
    new_i = ~te["item"].isin(tr["item"])
    return int(new_u.sum()), int(new_i.sum()), int((new_u | new_i).sum())


def check_report(train, test):
    rep = test.report
    assert (rep["unseen_users"], rep["unseen_items"], rep["unseen_ratings"]) == reference_unseen(
        train, test
    )
    assert rep["test_ratings"] == test.nnz
    assert train.report["part"] == "train" and rep["part"] == "test"


def test_random_split(ratings):
    train, test = dmf.split.random(ratings, test_size=0.25, seed=3)
    check_partition(ratings, train, test)
    check_report(train, test)
    assert abs(test.nnz - 0.25 * ratings.nnz) <= ratings.n_blocks


def test_random_split_reproducible_by_seed(ratings):
    a = dmf.split.random(ratings, test_size=0.2, seed=5)[1]
    b = dmf.split.random(ratings, test_size=0.2, seed=5)[1]
    c = dmf.split.random(ratings, test_size=0.2, seed=6)[1]
    assert pairs(a) == pairs(b)
    assert pairs(a) != pairs(c)


def test_split_same_on_distributed(ratings, client):
    ref = pairs(dmf.split.by_user(ratings, test_size=0.3, seed=2)[1])
    with client.as_current():
        got = pairs(dmf.split.by_user(ratings, test_size=0.3, seed=2)[1])
    assert got == ref


def test_by_user_share(ratings):
    train, test = dmf.split.by_user(ratings, test_size=0.3, seed=1)
    check_partition(ratings, train, test)
    check_report(train, test)
    n = ratings.user_counts
    expected = np.minimum(np.rint(n * 0.3).astype(int), n - 1)
    np.testing.assert_array_equal(test.user_counts, expected)
    assert test.report["unseen_users"] == 0


def test_by_user_leave_k_out(ratings):
    train, test = dmf.split.by_user(ratings, leave_k_out=2, seed=0)
    check_partition(ratings, train, test)
    np.testing.assert_array_equal(test.user_counts, np.minimum(2, ratings.user_counts - 1))
    assert (train.user_counts >= 1).all()
    assert test.report["leave_k_out"] == 2


def test_by_user_reproducible(ratings):
    a = pairs(dmf.split.by_user(ratings, leave_k_out=1, seed=9)[1])
    assert a == pairs(dmf.split.by_user(ratings, leave_k_out=1, seed=9)[1])
    assert a != pairs(dmf.split.by_user(ratings, leave_k_out=1, seed=10)[1])


def test_temporal_per_user_matches_pandas(ratings):
    train, test = dmf.split.temporal(ratings, test_size=0.2)
    check_partition(ratings, train, test)
    check_report(train, test)
    df = frame(ratings).sort_values(["user", "timestamp", "item"], ascending=[True, False, False])
    n = df.groupby("user")["item"].transform("size")
    rank = df.groupby("user").cumcount()
    take = np.minimum(np.rint(n * 0.2), n - 1)
    ref = df[rank < take]
    assert pairs(test) == set(zip(ref["user"], ref["item"], strict=True))


def test_temporal_global_cut(ratings):
    train, test = dmf.split.temporal(ratings, test_size=0.2, per_user=False)
    check_partition(ratings, train, test)
    check_report(train, test)
    cut = test.report["cut_time"]
    assert frame(test)["timestamp"].min() >= cut
    assert frame(train)["timestamp"].max() < cut
    ts = np.sort(frame(ratings)["timestamp"].to_numpy())
    # the cut is the time whose "at or after" count is nearest the target
    counts = len(ts) - np.searchsorted(ts, np.unique(ts), side="left")
    best = np.abs(counts - 0.2 * len(ts)).min()
    assert abs(test.nnz - 0.2 * len(ts)) == best


def test_temporal_needs_timestamps():
    r = dmf.from_pandas(random_frame(seed=1))
    with pytest.raises(dmf.RatingsError, match="needs timestamps") as e:
        dmf.split.temporal(r)
    assert str(r.nnz) in str(e.value)


def test_kfold_partitions(ratings):
    folds = dmf.split.kfold(ratings, k=4, seed=0)
    assert len(folds) == 4
    tests = [pairs(te) for _, te in folds]
    assert set().union(*tests) == pairs(ratings)
    assert sum(len(t) for t in tests) == ratings.nnz
    for train, test in folds:
        check_partition(ratings, train, test)
        check_report(train, test)
    sizes = [len(t) for t in tests]
    assert max(sizes) - min(sizes) <= ratings.n_blocks
    again = dmf.split.kfold(ratings, k=4, seed=0)
    assert [pairs(te) for _, te in again] == tests


def test_unseen_report_counts_cold_users():
    df = pd.DataFrame({"user": [1, 1, 2, 3], "item": [1, 2, 1, 3], "rating": [1.0, 2.0, 3.0, 4.0]})
    r = dmf.from_pandas(df)
    from dmf.data._split import unseen_report

    train = r.derive(r.blocks)
    rep = unseen_report(train, r)
    assert rep["unseen_ratings"] == 0
    _, test = dmf.split.random(r, test_size=0.5, seed=0)
    ref = reference_unseen(*dmf.split.random(r, test_size=0.5, seed=0))
    assert (
        test.report["unseen_users"],
        test.report["unseen_items"],
        test.report["unseen_ratings"],
    ) == ref


@pytest.mark.parametrize("size", [0, 1, 1.5, -0.1, "0.2", True, float("nan")])
def test_bad_test_size(ratings, size):
    with pytest.raises(dmf.ParameterError, match="test_size"):
        dmf.split.random(ratings, test_size=size)


@pytest.mark.parametrize(
    ("func", "kw", "name"),
    [
        (dmf.split.kfold, {"k": 1}, "k"),
        (dmf.split.kfold, {"k": 2.5}, "k"),
        (dmf.split.random, {"seed": -1}, "seed"),
        (dmf.split.random, {"seed": 1.5}, "seed"),
        (dmf.split.random, {"seed": 2**64}, "seed"),
        (dmf.split.by_user, {"leave_k_out": 0}, "leave_k_out"),
        (dmf.split.temporal, {"per_user": "yes"}, "per_user"),
    ],
)
def test_bad_arguments(ratings, func, kw, name):
    with pytest.raises(dmf.ParameterError, match=name):
        func(ratings, **kw)


def test_split_rejects_non_ratings_and_takes_a_dataframe():
    with pytest.raises(dmf.RatingsError, match=r"must be a dmf\.Ratings or a pandas DataFrame"):
        dmf.split.random([(1, 1, 1.0)])
    df = random_frame(n_users=20, n_items=10, seed=4)
    a, b = dmf.split.random(df, seed=1)
    c, d = dmf.split.random(dmf.from_pandas(df), seed=1)
    assert (a.nnz, b.nnz) == (c.nnz, d.nnz)


def test_temporal_global_cut_impossible():
    df = random_frame(n_users=10, n_items=8, seed=3)
    df["ts"] = 1_000
    r = dmf.from_pandas(df, timestamp="ts")
    with pytest.raises(dmf.RatingsError, match=f"all {len(df)} ratings share"):
        dmf.split.temporal(r, per_user=False)
