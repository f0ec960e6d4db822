"""The server's one-user fold-in equals ``model.fold_in`` (scores to 1e-5)."""

import numpy as np
import pandas as pd
import pytest

import dmf
from dmf.server._foldin import Folder
from dmf.testing import random_ratings


def _models():
    explicit = random_ratings(n_users=60, n_items=50, seed=1)
    binary = explicit.to_pandas()
    binary["rating"] = 1.0
    implicit = dmf.from_pandas(binary[["user", "item", "rating"]])
    return {
        "als": (dmf.ALS(rank=6, max_iter=3, seed=0).fit(explicit), explicit),
        "als-unweighted": (
            dmf.ALS(rank=5, max_iter=2, weighted_reg=False, seed=0).fit(explicit),
            explicit,
        ),
        "implicit": (dmf.ALS(rank=6, max_iter=3, implicit=True, seed=0).fit(implicit), implicit),
        # counts as confidences: training weights above the [0, 1] score scale
        "implicit-counts": (
            dmf.ALS(rank=5, max_iter=2, implicit=True, alpha=2.0, seed=0).fit(explicit),
            explicit,
        ),
        "sgd": (dmf.SGD(rank=4, seed=0).fit(explicit), explicit),
        "baseline": (dmf.Baseline().fit(explicit), explicit),
        "nonnegative": (dmf.ALS(rank=4, max_iter=2, nonnegative=True).fit(explicit), explicit),
    }


MODELS = _models()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_fold_equals_model_fold_in(name):
    model, train = MODELS[name]
    frame = train.to_pandas()
    rng = np.random.default_rng(0)
    folder = Folder(model)
    hi = model.rating_scale_[1]
    for user in (3, 17):
        rows = frame[frame["user"] == user]
        items = rows["item"].to_numpy()
        extra = rng.choice(np.setdiff1d(model.items_.to_numpy(), items), 3, replace=False)
        items = np.concatenate([items, extra])
        weights = np.concatenate([rows["rating"].to_numpy(), np.full(3, hi)]).astype(np.float32)
        codes = model.items_.get_indexer(items)
        vec = folder.fold([(codes, weights)])[0]
        new = pd.DataFrame({"user": user, "item": items, "rating": weights.astype(float)})
        ref = model.fold_in(new)
        every = model.items_.to_numpy()
        want = ref.predict(np.full(len(every), user), every, clip=False)
        aug = np.column_stack(
            [
                np.zeros((len(every), 0)) if model.item_factors_ is None else model.item_factors_,
                np.ones(len(every)),
                model.item_bias_,
            ]
        )
        got = aug.astype(np.float64) @ vec.astype(np.float64)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_fold_refuses_weights_outside_the_scale():
    model, _ = MODELS["als"]
    folder = Folder(model)
    with pytest.raises(dmf.RatingsError, match="outside the model's scale"):
        folder.fold([(np.array([0, 1]), np.array([3.0, 99.0], np.float32))])


def test_implicit_fold_takes_counts_and_refuses_negative_weights():
    model, _ = MODELS["implicit-counts"]
    folder = Folder(model)
    assert np.isfinite(folder.fold([(np.array([0, 1]), np.array([4.0, 7.0], np.float32))])).all()
    with pytest.raises(dmf.RatingsError, match="negative weight"):
        folder.fold([(np.array([0, 1]), np.array([1.0, -2.0], np.float32))])
