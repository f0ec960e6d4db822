"""dmf.BPR: the fit against the plain reference, across schedulers, quality on ML-100K."""

from __future__ import annotations

import dask
import numpy as np
import pytest

import dmf
from dmf.kernels._bpr import NEGATIVES, reference_bpr, sample_triples
from dmf.kernels._rng import stream_key
from dmf.kernels._sgd import CHUNKS, tile_rows, visit_order, visit_segments
from dmf.models.sgd._bpr_rounds import _lists_from_blocks
from dmf.models.sgd._grid import _build_grid
from dmf.testing import random_ratings, scheduler

SMALL = {"n_users": 60, "n_items": 40, "density": 0.3, "seed": 3}


@pytest.fixture(scope="module")
def small():
    return random_ratings(**SMALL)


# --------------------------------------------------------------------- fit
@pytest.mark.parametrize("negatives", ["uniform", "popular"])
def test_single_block_epoch_equals_reference_bpr(small, negatives):
    """grid=1, one epoch: the fitted model is the plain-Python BPR over the same triples."""
    params = {"rank": 6, "max_iter": 1, "grid": 1, "lr": 0.05, "reg": 0.02, "reg_bias": 0.01}
    params["negatives"] = negatives
    cum = np.cumsum(small.item_counts) if negatives == "popular" else np.zeros(0, np.int64)
    model = dmf.BPR(**params, seed=7).fit(small)
    edges_u, edges_i = np.array([0, small.n_users]), np.array([0, small.n_items])
    (blk,) = _build_grid(small, edges_u, edges_i, 7, "float32", tile_rows(16, 4))[0]
    blk = blk.compute()
    indptr, indices = _lists_from_blocks(edges_u, edges_i, 0, 1, [blk])
    visit = visit_order(*visit_segments(blk.tiles, stream_key(7, CHUNKS, 0, 0, 0)))
    key = np.uint64(stream_key(7, NEGATIVES, 0, 0, 0))
    n_items = small.n_items
    triples = sample_triples(blk.users, blk.items, visit, indptr, indices, key, n_items, True, cum)
    rng = np.random.default_rng([7, 0])
    P = rng.normal(0.0, model.init_scale, (small.n_users, 6)).astype(np.float32).astype(float)
    Q = rng.normal(0.0, model.init_scale, (small.n_items, 6)).astype(np.float32).astype(float)
    b = np.zeros(small.n_items)
    loss, correct, skipped = reference_bpr(
        triples, P, Q, b, Q.copy(), b.copy(), 0, 0.05, 0.02, 0.01, True
    )
    np.testing.assert_allclose(model.user_factors_, P, atol=1e-5)
    np.testing.assert_allclose(model.item_factors_, Q, atol=1e-5)
    np.testing.assert_allclose(model.item_bias_, b, atol=1e-5)
    assert model.history["loss"][0] == pytest.approx(loss / small.nnz, rel=1e-5)
    assert model.history["correct"][0] == pytest.approx(correct / small.nnz, rel=1e-5)
    assert skipped == 0 and (model.user_bias_ == 0).all() and model.global_mean_ == 0.0


def _same(a, b):
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
    np.testing.assert_array_equal(a.item_bias_, b.item_bias_)
    np.testing.assert_array_equal(a.history["loss"], b.history["loss"])
    np.testing.assert_array_equal(a.history["correct"], b.history["correct"])


@pytest.mark.parametrize(("grid", "epochs"), [(1, 2), (2, 10), (3, 3)])  # 10: two rounds
def test_inprocess_lanes_equal_the_dask_graph(small, monkeypatch, grid, epochs):
    import dmf.models.sgd._bpr_rounds as bpr

    params = {"rank": 8, "max_iter": epochs, "grid": grid, "seed": 5}
    monkeypatch.setattr(bpr, "_dask_round", lambda *a: pytest.fail("no graph in-process"))
    a = dmf.BPR(**params).fit(small)
    monkeypatch.undo()
    with dask.config.set({"dmf.in-process": False}):  # the graph, threaded scheduler
        b = dmf.BPR(**params).fit(small)
    _same(a, b)


@pytest.mark.parametrize("negatives", ["uniform", "popular"])
def test_threaded_and_distributed_are_bit_identical(small, client, negatives):
    params = {"rank": 8, "max_iter": 3, "grid": 2, "seed": 11, "negatives": negatives}
    with scheduler("threads"):
        a = dmf.BPR(**params).fit(small)
    with scheduler("distributed", client):
        b = dmf.BPR(**params).fit(small)
    _same(a, b)


def test_seed_and_grid_decide_the_model(small):
    a = dmf.BPR(rank=4, max_iter=2, grid=2, seed=1).fit(small)
    b = dmf.BPR(rank=4, max_iter=2, grid=2, seed=1).fit(small)
    c = dmf.BPR(rank=4, max_iter=2, grid=2, seed=2).fit(small)
    _same(a, b)
    assert not np.array_equal(a.user_factors_, c.user_factors_)


def test_training_orders_pairs(small):
    model = dmf.BPR(rank=8, max_iter=30, grid=2, lr=0.05).fit(small)
    assert model.history["correct"].iloc[-1] > model.history["correct"].iloc[0]
    assert model.history["loss"].iloc[-1] < model.history["loss"].iloc[0]


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"rank": 0}, "rank"),
        ({"max_iter": 0}, "max_iter"),
        ({"lr": 0.0}, "lr"),
        ({"reg": -1.0}, "reg"),
        ({"reg_bias": float("nan")}, "reg_bias"),
        ({"verify_negative_samples": 1}, "verify_negative_samples"),
        ({"init_scale": 0.0}, "init_scale"),
        ({"grid": 0}, "grid"),
        ({"grid": 41}, "grid=41"),
        ({"seed": -1}, "seed"),
        ({"dtype": "int8"}, "dtype"),
    ],
)
def test_bad_parameters_raise_dmf_errors(small, params, match):
    with pytest.raises(dmf.ParameterError, match=match):
        dmf.BPR(**params).fit(small)


@pytest.mark.slow
def test_defaults_beat_popularity_by_30_percent_on_ml100k_u1(u1):
    """precision@10 >= 1.3 x popularity's 0.213 (relevant: test rating >= 4, train masked)."""
    train, test = u1
    scores = {}
    for grid in (1, 2, 4):
        model = dmf.BPR(grid=grid).fit(train)
        res = dmf.evaluate(
            model, test, metrics=["precision@10"], train=train, relevance_threshold=4
        )
        scores[grid] = res["precision@10"]
    assert min(scores.values()) >= 0.277, scores


def test_front_door_save_load_recommend_evaluate(small, tmp_path):
    model = dmf.fit(small, method="bpr", rank=8, max_iter=5, grid=2, seed=3)
    assert isinstance(model, dmf.BPR) and model.kind == "bpr"
    path = model.save(str(tmp_path / "bpr.zarr"))
    back = dmf.load(path)
    assert type(back) is dmf.BPR and back.get_params() == model.get_params()
    np.testing.assert_array_equal(back.item_factors_, model.item_factors_)
    np.testing.assert_array_equal(back.item_bias_, model.item_bias_)
    user = model.users_[0]
    top = back.recommend(user, k=5, exclude=small)
    pd_top = model.recommend(user, k=5, exclude=small)
    assert top["item"].tolist() == pd_top["item"].tolist()
    # Ranked by p_u . q_i + b_i, the user's training items left out.
    u = 0
    scores = model.user_factors_[u] @ model.item_factors_.T + model.item_bias_
    seen = set(small.to_pandas(codes=True).query("user == @u")["item"])
    want = [i for i in np.argsort(-scores, kind="stable") if i not in seen][:5]
    assert [model.items_.get_loc(i) for i in top["item"]] == want
    res = dmf.evaluate(back, small, metrics=["precision@5"], train=None)
    assert 0.0 <= res["precision@5"] <= 1.0


def test_resume_is_bit_identical(small, tmp_path):
    params = {"rank": 8, "grid": 2, "seed": 4}
    full = dmf.BPR(max_iter=6, **params).fit(small)
    path = str(tmp_path / "ckpt")
    dmf.BPR(max_iter=3, **params).fit(small, checkpoint=path)
    resumed = dmf.BPR(max_iter=6, **params).fit(
        small, checkpoint=path, checkpoint_every=2, resume=True
    )
    _same(full, resumed)
    with pytest.raises(dmf.ParameterError, match="cannot resume"):
        dmf.BPR(max_iter=6, **{**params, "lr": 0.5}).fit(small, checkpoint=path, resume=True)


def test_clicks_without_a_rating_column_fit_and_fold_in():
    clicks = random_ratings(**SMALL).to_pandas()[["user", "item"]]
    model = dmf.BPR(rank=4, max_iter=2, grid=2).fit(dmf.from_pandas(clicks, rating=None))
    assert len(model.history) == 2  # no constant-ratings warning (they are errors here)
    new = model.fold_in(clicks.head(3).assign(user=-1))
    assert new.user_factors_.shape == (model.user_factors_.shape[0] + 1, 4)
