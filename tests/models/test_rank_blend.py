"""The ranking blend: standardised member scores against a dense reference, search, store."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import dmf
from dmf.testing import random_ratings


@pytest.fixture(scope="module")
def parts():
    r = random_ratings(n_users=80, n_items=40, seed=5)
    train, valid = dmf.split.random(r, test_size=0.3, seed=0)
    members = [
        dmf.Popular().fit(train),
        dmf.ALS(implicit=True, rank=4, max_iter=3).fit(train),
        dmf.Baseline().fit(train),
    ]
    model = dmf.blend(members, validation=valid, objective="ndcg@5", train=train)
    return members, train, valid, model


def _z(s: np.ndarray, seen: np.ndarray) -> np.ndarray:
    mean = s[:, seen].mean(axis=1, keepdims=True)
    sd = s[:, seen].std(axis=1, keepdims=True)
    return np.where(sd > 0, (s - mean) / np.where(sd > 0, sd, 1), 0.0)


def test_scores_equal_the_dense_reference(parts):
    members, _, _, model = parts
    assert isinstance(model, dmf.RankBlend)
    u = np.arange(len(model.users_))
    seen = model.item_counts_ > 0
    ref = sum(
        w * _z(m._score_users(u).astype(np.float64), seen)
        for m, w in zip(members, model.weights_, strict=True)
    )
    np.testing.assert_allclose(model._score_users(u), ref, rtol=1e-5, atol=1e-5)
    one = model.predict(model.users_[:3], model.items_[:3])
    np.testing.assert_allclose(one, ref[[0, 1, 2], [0, 1, 2]], rtol=1e-5, atol=1e-5)


def test_weights_are_searched_and_never_lose_on_validation(parts):
    members, train, valid, model = parts
    assert model.validation_score_ >= max(model.member_scores_)
    got = dmf.evaluate(model, valid, ["ndcg@5"], train=train)["ndcg@5"]
    assert got == pytest.approx(model.validation_score_, abs=1e-12)
    for j, m in enumerate(members):
        alone = dmf.evaluate(m, valid, ["ndcg@5"], train=train)["ndcg@5"]
        assert model.member_scores_[j] == pytest.approx(alone, abs=1e-12)
    again = dmf.blend(members, validation=valid, objective="ndcg@5", train=train)
    np.testing.assert_array_equal(again.weights_, model.weights_)
    assert (model.weights_ >= 0).all() and model.weights_.any()


def test_recommend_and_save_load(parts, tmp_path):
    _, train, _, model = parts
    back = dmf.load(model.save(tmp_path / "rb.zarr"))
    assert isinstance(back, dmf.RankBlend)
    np.testing.assert_array_equal(back.weights_, model.weights_)
    users = list(model.users_[:4])
    pd.testing.assert_frame_equal(
        back.recommend(users, k=3, exclude=train), model.recommend(users, k=3, exclude=train)
    )


def test_bad_input(parts):
    members, train, valid, _ = parts
    for bad in ("rmse", "auc", "coverage@5", "ndcg"):
        with pytest.raises(dmf.ParameterError):
            dmf.blend(members, validation=valid, objective=bad, train=train)
    other = dmf.Popular().fit(random_ratings(n_users=20, n_items=10, seed=9))
    with pytest.raises(dmf.ParameterError, match="members \\[1\\] were fitted on other users"):
        dmf.blend([members[0], other], validation=valid, objective="ndcg@5")
    with pytest.raises(dmf.RatingsError, match="validation= is required"):
        dmf.RankBlend().fit(members)
    with pytest.raises(dmf.ParameterError, match="models is empty"):
        dmf.blend([], validation=valid, objective="ndcg@5")


def test_refit_keeps_the_weights_and_refits_every_member(parts, tmp_path):
    members, train, _, model = parts
    full = random_ratings(n_users=80, n_items=40, seed=5)
    before = model.weights_.copy()
    more = model.refit(full)
    assert isinstance(more, dmf.RankBlend) and more is not model
    np.testing.assert_array_equal(more.weights_, before)
    np.testing.assert_array_equal(model.weights_, before)  # the original is untouched
    assert more.validation_score_ == model.validation_score_
    assert all(m.user_counts_.sum() == train.nnz for m in model.members_)
    u = np.arange(len(more.users_))
    seen = more.item_counts_ > 0
    fresh = [type(m)(**m.get_params()).fit(full) for m in members]
    ref = sum(
        w * _z(m._score_users(u).astype(np.float64), seen)
        for m, w in zip(fresh, before, strict=True)
    )
    np.testing.assert_allclose(more._score_users(u), ref, rtol=1e-5, atol=1e-5)
    assert int(more.user_counts_.sum()) == full.nnz
    back = dmf.load(more.save(tmp_path / "refit.zarr"))
    np.testing.assert_allclose(back._score_users(u), more._score_users(u), atol=1e-6)
