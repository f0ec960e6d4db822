"""Fold-in: users solved against fixed items reproduce training, new users are appended."""

from __future__ import annotations

import dask
import numpy as np
import pandas as pd
import pytest

import dmf
from dmf.testing import random_frame


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    df = random_frame(n_users=50, n_items=35, density=0.3, seed=11)
    df["user"] = df["user"] + 100
    return df


def _fit(kind: str, df: pd.DataFrame, **params):
    if kind not in dmf.METHODS:
        pytest.skip(f"dmf.METHODS has no {kind!r} yet")
    defaults = {
        "baseline": {"max_iter": 4},
        "als": {"rank": 5, "max_iter": 4, "seed": 0},
        "sgd": {"rank": 5, "max_iter": 3, "grid": 2, "seed": 0},
    }[kind]
    with dask.config.set(scheduler="threads"):
        return dmf.fit(dmf.from_pandas(df), method=kind, **{**defaults, **params})


@pytest.mark.parametrize("kind", ["baseline", "als"])
def test_fold_in_of_training_ratings_reproduces_the_fit(kind, frame):
    model = _fit(kind, frame)
    again = model.fold_in(frame)
    assert again.fold_in_report_ == {
        "users_added": 0,
        "users_updated": frame["user"].nunique(),
        "ratings": len(frame),
        "ignored_ratings": 0,
    }
    np.testing.assert_allclose(again.user_bias_, model.user_bias_, atol=1e-5)
    if kind == "als":
        np.testing.assert_allclose(again.user_factors_, model.user_factors_, atol=1e-4)
    u = np.repeat(model.users_.to_numpy(), len(model.items_))
    i = np.tile(model.items_.to_numpy(), len(model.users_))
    np.testing.assert_allclose(again.predict(u, i), model.predict(u, i), atol=1e-4)
    np.testing.assert_array_equal(again.user_counts_, model.user_counts_)


@pytest.mark.parametrize("kind", ["baseline", "als", "sgd"])
def test_new_user_is_appended_and_the_model_left_alone(kind, frame):
    model = _fit(kind, frame)
    before = {k: np.copy(getattr(model, k)) for k in ("user_bias_", "user_counts_")}
    n = len(model.users_)
    own = frame[frame["user"] == 103]
    new = model.fold_in(own.assign(user=999))
    assert type(new) is type(model) and new is not model
    assert len(new.users_) == n + 1 and new.users_[-1] == 999
    assert list(new.users_[:n]) == list(model.users_)
    assert len(model.users_) == n
    for k, v in before.items():
        np.testing.assert_array_equal(getattr(model, k), v)
    assert new.user_counts_[-1] == len(own)
    assert new.fold_in_report_["users_added"] == 1
    # The new user is the old user 103 under another id.
    items = own["item"].to_numpy()
    if kind != "sgd":  # ALS/Baseline: 103's fold-in equals its fitted state
        np.testing.assert_allclose(new.predict(999, items), model.predict(103, items), atol=1e-4)
    assert np.isfinite(new.predict(999, items)).all()
    if model.user_factors_ is not None:
        assert new.user_factors_.shape == (n + 1, model.user_factors_.shape[1])
        np.testing.assert_array_equal(new.user_factors_[:n], model.user_factors_)
    # Cold before, warm after.
    assert np.isnan(model.predict(999, items[:1], cold_start="nan")).all()
    assert not np.isnan(new.predict(999, items[:1], cold_start="nan")).any()


def test_known_user_update_replaces_only_that_user(frame):
    model = _fit("als", frame)
    code = model.users_.get_loc(104)
    items = frame["item"].unique()[:6]
    new_ratings = pd.DataFrame({"user": 104, "item": items, "rating": 5.0})
    new = model.fold_in(new_ratings)
    assert len(new.users_) == len(model.users_)
    assert new.user_counts_[code] == 6
    assert not np.allclose(new.user_factors_[code], model.user_factors_[code])
    others = np.arange(len(model.users_)) != code
    np.testing.assert_array_equal(new.user_factors_[others], model.user_factors_[others])
    assert (new.predict(104, items) > model.predict(104, items) - 1e-6).all()
    # The original is untouched.
    assert model.user_counts_[code] == (frame["user"] == 104).sum()


def test_chained_and_sibling_fold_ins_do_not_interfere(frame):
    model = _fit("als", frame)
    own = frame[frame["user"] == 105]
    a = model.fold_in(own.assign(user=1001))
    b = a.fold_in(own.assign(user=1002, rating=1.0))  # appends into a's spare rows
    c = a.fold_in(own.assign(user=1003, rating=5.0))  # a sibling of b: must copy
    assert list(b.users_[-2:]) == [1001, 1002] and list(c.users_[-2:]) == [1001, 1003]
    assert len(a.users_) == len(model.users_) + 1
    np.testing.assert_array_equal(b.user_factors_[:-1], a.user_factors_)
    np.testing.assert_array_equal(c.user_factors_[:-1], a.user_factors_)
    assert not np.allclose(b.user_factors_[-1], c.user_factors_[-1])
    lone = a.fold_in(own.assign(user=1002, rating=1.0))
    np.testing.assert_array_equal(b.user_factors_[-1], lone.user_factors_[-1])


def test_string_ids_and_ratings_input(frame):
    df = frame.assign(user="u" + frame["user"].astype(str), item="i" + frame["item"].astype(str))
    model = _fit("baseline", df)
    own = df[df["user"] == "u110"]
    new = model.fold_in(dmf.from_pandas(own.assign(user="zed")))
    assert new.users_[-1] == "zed"
    np.testing.assert_allclose(
        new.predict("zed", own["item"]), model.predict("u110", own["item"]), atol=1e-5
    )
    with pytest.raises(dmf.RatingsError, match="not strings"):
        model.fold_in(pd.DataFrame({"user": [5], "item": ["i1"], "rating": [3.0]}))


def test_unknown_items_raise_or_are_ignored_with_a_count(frame):
    model = _fit("als", frame)
    df = pd.DataFrame({"user": [7, 7, 7], "item": [1, 2, 12345], "rating": [4.0, 3.0, 5.0]})
    with pytest.raises(dmf.RatingsError, match=r"1 rating.*12345"):
        model.fold_in(df)
    new = model.fold_in(df, unknown_items="ignore")
    assert new.fold_in_report_["ignored_ratings"] == 1
    assert new.user_counts_[-1] == 2
    with pytest.raises(dmf.ParameterError, match="unknown_items"):
        model.fold_in(df, unknown_items="drop")


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (pd.DataFrame({"user": [1], "item": [1]}), "lacks column"),
        (pd.DataFrame({"user": [1], "item": [1], "rating": [np.nan]}), "NaN"),
        (pd.DataFrame({"user": [None], "item": [1], "rating": [3.0]}), "missing id"),
        (pd.DataFrame({"user": [1, 1], "item": [1, 1], "rating": [3.0, 4.0]}), "repeating"),
        (pd.DataFrame({"user": [1], "item": [1], "rating": [9.0]}), "outside"),
        (pd.DataFrame({"user": [], "item": [], "rating": []}), "empty"),
        ([(1, 1, 3.0)], "DataFrame"),
    ],
)
def test_bad_new_ratings(frame, bad, match):
    model = _fit("baseline", frame)
    with pytest.raises(dmf.RatingsError, match=match):
        model.fold_in(bad)


def test_unfitted_model():
    with pytest.raises(dmf.NotFittedError):
        dmf.Baseline().fold_in(pd.DataFrame({"user": [1], "item": [1], "rating": [3.0]}))


def test_folded_model_saves_and_loads(frame, tmp_path):
    model = _fit("als", frame)
    new = model.fold_in(frame[frame["user"] == 101].assign(user=5000))
    back = dmf.load(new.save(tmp_path / "m.zarr"))
    assert back.users_[-1] == 5000
    items = frame["item"].unique()
    np.testing.assert_array_equal(back.predict(5000, items), new.predict(5000, items))


def test_repeated_fold_ins_from_one_model_leave_it_and_each_other_intact(frame):
    model = _fit("als", frame)
    ids = list(model.users_)
    items = frame["item"].unique()
    before = model.predict(ids[:5], items[:5])
    own = frame[frame["user"] == 106]
    a = model.fold_in(own.assign(user=2001))
    row_a = a.user_factors_[-1].copy()
    b = model.fold_in(own.assign(user=2002, rating=1.0))  # a is alive: b must not overwrite it
    for _ in range(3):
        model.fold_in(own.assign(user=2003))  # dropped results: their rows are reused
    assert list(model.users_) == ids
    np.testing.assert_array_equal(model.predict(ids[:5], items[:5]), before)
    np.testing.assert_array_equal(a.user_factors_[-1], row_a)
    assert (int(a.users_[-1]), int(b.users_[-1])) == (2001, 2002)
    assert np.isnan(a.predict(2002, items[:1], cold_start="nan")).all()  # b's user is not a's
    # The model still folds in its own users (lookups after its ids moved buffers).
    again = model.fold_in(own)
    assert again.fold_in_report_["users_updated"] == 1


def test_implicit_fold_in_takes_items_without_a_rating_column():
    clicks = pd.DataFrame({"user": [1, 1, 2, 2, 3], "item": [1, 2, 2, 3, 1]})
    model = dmf.ALS(implicit=True, rank=2, max_iter=2).fit(dmf.from_pandas(clicks, rating=None))
    new = model.fold_in(pd.DataFrame({"user": [9, 9], "item": [1, 3]}))
    ones = model.fold_in(pd.DataFrame({"user": [9, 9], "item": [1, 3], "rating": [1.0, 1.0]}))
    np.testing.assert_allclose(new.user_factors_[-1], ones.user_factors_[-1], rtol=1e-6)
    with pytest.raises(dmf.RatingsError, match=r"user column has 1 id\(s\) that are unhashable"):
        model.fold_in(pd.DataFrame({"user": pd.Series([[9]], dtype=object), "item": [1]}))
