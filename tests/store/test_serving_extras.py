"""The optional groups serving needs: training interactions and titles, complete or absent."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import zarr

import dmf
from dmf.store import read_interactions, read_titles
from dmf.testing import random_ratings


@pytest.fixture(scope="module")
def fitted():
    train = random_ratings(n_users=40, n_items=25, seed=4)
    return dmf.ALS(rank=3, max_iter=2, seed=0).fit(train), train


def test_save_keeps_the_fit_interactions_and_titles(fitted, tmp_path):
    model, train = fitted
    titles = pd.Series(["first", "fourth", "unknown"], index=[model.items_[0], model.items_[3], -7])
    url = model.save(str(tmp_path / "m.zarr"), titles=titles)
    indptr, items, weights = read_interactions(url)
    ref = train.to_scipy()
    assert np.array_equal(indptr, ref.indptr) and np.array_equal(items, ref.indices)
    np.testing.assert_array_equal(weights, ref.data.astype(np.float32))
    got = read_titles(url)
    assert got[0] == "first" and got[3] == "fourth" and (got[[1, 2, 4]] == "").all()
    assert len(got) == len(model.items_)
    # the model itself loads as before, and the groups are plain Zarr arrays
    np.testing.assert_array_equal(dmf.load(url).item_factors_, model.item_factors_)
    root = zarr.open_group(str(tmp_path / "m.zarr"), mode="r")
    assert root["interactions/item"].shape == (train.nnz,)


def test_interactions_of_other_ratings_are_mapped_to_model_codes(fitted, tmp_path):
    model, train = fitted
    frame = train.to_pandas()
    part = frame[frame["user"].isin(model.users_[::2])].iloc[::-1]  # other order, fewer ids
    url = model.save(str(tmp_path / "p.zarr"), interactions=dmf.from_pandas(part))
    indptr, items, weights = read_interactions(url)
    assert len(indptr) == len(model.users_) + 1 and indptr[-1] == len(part)
    u = np.repeat(np.arange(len(model.users_)), np.diff(indptr))
    got = set(zip(model.users_[u], model.items_[items], weights.tolist(), strict=True))
    want = set(zip(part["user"], part["item"], part["rating"].astype(np.float32), strict=True))
    assert got == want
    stranger = pd.DataFrame({"user": [10_000], "item": [model.items_[0]], "rating": [3.0]})
    with pytest.raises(dmf.RatingsError, match="does not know"):
        model.save(str(tmp_path / "q.zarr"), interactions=dmf.from_pandas(stranger))


def test_stores_without_the_groups_still_load(fitted, tmp_path):
    model, _ = fitted
    url = model.save(str(tmp_path / "plain.zarr"), interactions=False)
    assert read_interactions(url) is None and read_titles(url) is None
    assert dmf.load(url).predict([model.users_[0]], [model.items_[0]]).shape == (1,)


def test_an_interrupted_save_is_refused(fitted, tmp_path):
    model, _ = fitted
    path = str(tmp_path / "cut.zarr")
    model.save(path, titles={model.items_[0]: "x"})
    group = zarr.open_group(path, mode="r+")
    group.attrs.update({"dmf_complete": False})  # as if the crash came before the mark
    with pytest.raises(dmf.StoreError, match="incomplete"):
        read_interactions(path)
    with pytest.raises(dmf.StoreError, match="incomplete"):
        read_titles(path)


def test_the_model_does_not_carry_its_training_data_when_pickled(fitted):
    import pickle

    model, _ = fitted
    assert "_train_ratings" not in pickle.loads(pickle.dumps(model)).__dict__


def test_a_loaded_model_has_its_id_tables_built(fitted, tmp_path):
    # pandas fills an index's hash table on first lookup, and not thread-safely: a loaded
    # model that answers from several threads must not share that first fill.
    model, _ = fitted
    loaded = dmf.load(model.save(str(tmp_path / "ids.zarr")))
    for index in (loaded.users_, loaded.items_):
        populated = getattr(index._engine, "is_mapping_populated", None)
        if populated is None:
            pytest.skip("this pandas does not say whether an index's table is built")
        assert populated
