"""Feature-weighted linear stacking (method="fwls") against a plain numpy ridge on its design."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

import dmf
from dmf.testing import random_ratings


@pytest.fixture(scope="module")
def parts():
    r = random_ratings(n_users=70, n_items=40, seed=11)
    train, valid = dmf.split.random(r, test_size=0.3, seed=0)
    members = [dmf.Baseline().fit(train), dmf.ALS(rank=3, max_iter=3).fit(train)]
    model = dmf.blend(members, validation=valid, method="fwls", alpha=0.5)
    return members, train, valid, model


def _features(model, users, items):
    u, i = model._user_codes(users), model._item_codes(items)
    nu = np.where(u >= 0, model.user_counts_[np.maximum(u, 0)], 0)
    ni = np.where(i >= 0, model.item_counts_[np.maximum(i, 0)], 0)
    lu, li = np.log1p(nu), np.log1p(ni)
    return np.column_stack([np.ones(len(u)), lu, li, lu * li / 10])


def test_weights_equal_a_plain_ridge(parts):
    members, _, valid, model = parts
    df = valid.to_pandas()
    users, items = df["user"].to_numpy(), df["item"].to_numpy()
    P = np.column_stack([m.predict(users, items).astype(np.float64) for m in members])
    F = _features(members[0], users, items)
    D = np.column_stack([P[:, j : j + 1] * F for j in range(P.shape[1])] + [F])
    theta = np.linalg.solve(D.T @ D + 0.5 * np.eye(D.shape[1]), D.T @ df["rating"].to_numpy())
    np.testing.assert_allclose(model.feature_weights_.ravel(), theta[:-4], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(model.feature_intercepts_, theta[-4:], rtol=1e-8, atol=1e-10)
    ref = np.clip(D @ theta, *members[0].rating_scale_)
    np.testing.assert_allclose(model.predict(users, items), ref, rtol=1e-5, atol=1e-5)
    assert model.validation_rmse_ == pytest.approx(
        np.sqrt(np.mean((ref - df["rating"].to_numpy()) ** 2)), rel=1e-5
    )


def test_scores_match_predictions_and_the_store(parts, tmp_path):
    model = parts[3]
    u = np.arange(5)
    scores = model._score_users(u)
    raw = model._predict_codes(
        np.repeat(u, len(model.items_)), np.tile(np.arange(len(model.items_)), 5)
    )
    np.testing.assert_allclose(scores.ravel(), raw, rtol=1e-5, atol=1e-5)
    back = dmf.load(model.save(tmp_path / "fwls.zarr"))
    np.testing.assert_array_equal(back.feature_weights_, model.feature_weights_)
    users = list(model.users_[:4])
    pd.testing.assert_frame_equal(back.recommend(users, k=3), model.recommend(users, k=3))
    new = pd.DataFrame({"user": [10_000], "item": [model.items_[0]], "rating": [4.0]})
    folded = model.fold_in(new)
    np.testing.assert_array_equal(folded.feature_weights_, model.feature_weights_)


def test_refit_as_plain_blend_drops_feature_weights(parts):
    members, _, valid, model = parts
    plain = copy.deepcopy(model).set_params(method="nnls").fit(members, valid)
    assert not hasattr(plain, "feature_weights_") and hasattr(model, "feature_weights_")
    with pytest.raises(dmf.ParameterError, match="method"):
        dmf.blend(members, validation=valid, method="stacking")
