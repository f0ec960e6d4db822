"""items= / exclude= forms, similar_users, recommend_users, recommend_new vs dense references."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import dmf
from dmf.serving._foldin import fold_in_users
from dmf.testing import random_frame


@pytest.fixture(scope="module")
def small():
    df = random_frame(n_users=40, n_items=30, seed=3)
    train = dmf.from_pandas(df, chunk_nnz=120)
    model = dmf.Baseline(max_iter=1).fit(train)
    rng = np.random.default_rng(0)
    # multiples of 1/2: exact float32 scores, with ties that go to the lower code
    model.global_mean_ = 3.5
    model.user_bias_ = (rng.integers(-2, 3, model.users_.size) / 2).astype(np.float32)
    model.item_bias_ = (rng.integers(-2, 3, model.items_.size) / 2).astype(np.float32)
    model.user_factors_ = rng.integers(-1, 2, (model.users_.size, 3)).astype(np.float32)
    model.item_factors_ = rng.integers(-1, 2, (model.items_.size, 3)).astype(np.float32)
    return model, train, df


def _dense(model):
    s = model.user_factors_.astype(np.float64) @ model.item_factors_.T.astype(np.float64)
    return s + model.global_mean_ + model.user_bias_[:, None] + model.item_bias_[None, :]


def _top(scores, allowed, k):
    """Indices of the k best allowed entries by (-score, index)."""
    idx = [i for i in range(len(scores)) if allowed[i]]
    return sorted(idx, key=lambda i: (-scores[i], i))[:k]


def _ref_recommend(model, user, k, excluded=(), items=None):
    u = model.users_.get_loc(user)
    allowed = np.ones(len(model.items_), bool)
    if items is not None:
        allowed[:] = False
        allowed[model.items_.get_indexer(items)] = True
    for i in excluded:
        if i in model.items_:
            allowed[model.items_.get_loc(i)] = False
    return model.items_.take(_top(_dense(model)[u], allowed, k)).tolist()


def test_items_restricts_the_candidates(small):
    model, _, _ = small
    cands = list(model.items_[::3])
    for user in model.users_[:8]:
        got = model.recommend([user], k=5, items=cands)["item"].tolist()
        assert got == _ref_recommend(model, user, 5, items=cands)
    recs = model.recommend_all(k=4, items=cands).compute()
    assert set(recs["item"]) <= set(cands)
    one = recs[recs["user"] == model.users_[2]]["item"].tolist()
    assert one == _ref_recommend(model, model.users_[2], 4, items=cands)


def test_items_unknown_ids_raise_or_skip(small):
    model, _, _ = small
    bad = [model.items_[0], 9991, 9992]
    with pytest.raises(dmf.UnknownIdError, match=r"2 id\(s\) in items= unseen.*of 3.*9991"):
        model.recommend([model.users_[0]], k=1, items=bad)
    got = model.recommend([model.users_[0]], k=1, items=bad, on_unknown="skip")
    assert got["item"].tolist() == [model.items_[0]]
    with pytest.raises(dmf.ParameterError, match=r"k=3 is larger than the items= list: 1"):
        model.recommend([model.users_[0]], k=3, items=bad, on_unknown="skip")
    with pytest.raises(dmf.ParameterError, match="on_unknown"):
        model.recommend([model.users_[0]], k=1, items=bad, on_unknown="drop")


def test_exclude_forms_agree_with_the_reference(small):
    model, train, df = small
    users = list(model.users_[:6])
    seen = {u: df.loc[df["user"] == u, "item"].tolist() for u in users}
    want = pd.concat(
        [pd.DataFrame({"user": u, "item": _ref_recommend(model, u, 4, seen[u])}) for u in users]
    )["item"].tolist()
    forms = [train, df[df["user"].isin(users)][["user", "item"]], seen]
    for form in forms:
        assert model.recommend(users, k=4, exclude=form)["item"].tolist() == want
    u = users[0]
    for form in (seen[u], np.array(seen[u]), pd.Index(seen[u])):
        assert model.recommend([u], k=4, exclude=form)["item"].tolist() == want[:4]
    # excluded ids the model never saw change nothing
    assert model.recommend([u], k=4, exclude=[*seen[u], 12345])["item"].tolist() == want[:4]


def test_exclude_bad_forms(small):
    model, _, df = small
    with pytest.raises(dmf.ParameterError, match="for one user; 2 users"):
        model.recommend(list(model.users_[:2]), k=2, exclude=[1, 2])
    with pytest.raises(dmf.ParameterError, match=r"lacks column\(s\) \['item'\]"):
        model.recommend([model.users_[0]], k=2, exclude=df[["user"]])
    with pytest.raises(dmf.ParameterError, match="exclude must be"):
        model.recommend([model.users_[0]], k=2, exclude="train")


def test_similar_users_is_cosine_of_user_factors(small):
    model, _, _ = small
    f = model.user_factors_.astype(np.float64)
    norms = np.linalg.norm(f, axis=1)
    unit = np.divide(f, norms[:, None], out=np.zeros_like(f), where=norms[:, None] > 0)
    sims = unit @ unit.T
    got = model.similar_users(list(model.users_[:5]), k=4)
    for n, user in enumerate(model.users_[:5]):
        allowed = np.ones(len(model.users_), bool)
        allowed[n] = False
        ref = model.users_.take(_top(np.round(sims[n], 6), allowed, 4)).tolist()
        assert got[got["user"] == user]["similar_user"].tolist() == ref
    with pytest.raises(dmf.ParameterError, match="bias-only"):
        dmf.Baseline().fit(small[1]).similar_users([model.users_[0]])
    with pytest.raises(dmf.UnknownIdError, match="1 user id"):
        model.similar_users([model.users_[0], "nobody"])


def test_recommend_users_is_the_transposed_reference(small):
    model, train, df = small
    dense = _dense(model)
    items = list(model.items_[:9])
    got = model.recommend_users(items=items, k=5, exclude=train).compute()
    assert got["item"].tolist() == np.repeat(items, 5).tolist()
    for item in items:
        i = model.items_.get_loc(item)
        allowed = ~model.users_.isin(df.loc[df["item"] == item, "user"])
        ref = model.users_.take(_top(dense[:, i], allowed, 5)).tolist()
        assert got[got["item"] == item]["user"].tolist() == ref
    every = model.recommend_users(k=2).compute()
    assert every["item"].nunique() == int((model.item_counts_ > 0).sum())
    with pytest.raises(dmf.ParameterError, match="k=41 is larger than the users seen"):
        model.recommend_users(items=items, k=41)
    with pytest.raises(dmf.UnknownIdError, match="1 id"):
        model.recommend_users(items=[*items, 777], k=2)
    assert len(model.recommend_users(items=[*items, 777], k=2, on_unknown="skip").compute()) == 18


def test_recommend_users_of_popular_ties_to_lower_user_codes(small):
    _, train, _ = small
    pop = dmf.Popular().fit(train)
    got = pop.recommend_users(items=[pop.items_[0]], k=3).compute()
    assert got["user"].tolist() == list(pop.users_[:3])


@pytest.fixture(scope="module")
def implicit_model():
    df = random_frame(n_users=60, n_items=25, seed=4)[["user", "item"]]
    train = dmf.from_pandas(df, rating=None)
    return dmf.ALS(implicit=True, rank=4, max_iter=4).fit(train), df


def test_recommend_new_equals_the_fold_in_reference(implicit_model):
    model, _ = implicit_model
    history = list(model.items_[[1, 4, 4, 7]])  # item 4 listed twice: value 2
    codes = np.array([1, 4, 7])
    csr = type("C", (), {})()
    csr.indptr, csr.indices = np.array([0, 3]), codes
    csr.data = np.array([1.0, 2.0, 1.0])
    x, _ = fold_in_users(model, csr)
    scores = model.item_factors_.astype(np.float64) @ x[0].astype(np.float64)
    allowed = np.ones(len(model.items_), bool)
    allowed[codes] = False
    ref = model.items_.take(_top(np.round(scores, 4), allowed, 5)).tolist()
    got = model.recommend_new(history, k=5)
    assert got["item"].tolist() == ref and got["rank"].tolist() == [1, 2, 3, 4, 5]
    cands = list(model.items_[10:20])
    assert set(model.recommend_new(history, k=3, items=cands)["item"]) <= set(cands)


def test_recommend_new_empty_history_is_popularity(implicit_model):
    model, df = implicit_model
    counts = df.groupby("item").size()
    ref = sorted(counts.index, key=lambda i: (-counts[i], i))[:6]
    assert model.recommend_new([], k=6)["item"].tolist() == ref
    assert model.recommend_new([555], k=6, on_unknown="skip")["item"].tolist() == ref
    pop = dmf.Popular().fit(dmf.from_pandas(df, rating=None))
    assert pop.recommend_new(ref[:2], k=4)["item"].tolist() == ref[2:6]


def test_recommend_new_bad_input(implicit_model, small):
    model, _ = implicit_model
    with pytest.raises(dmf.UnknownIdError, match=r"1 id\(s\) in history"):
        model.recommend_new([model.items_[0], 555], k=2)
    with pytest.raises(dmf.ParameterError, match="k=0"):
        model.recommend_new([model.items_[0]], k=0)
    with pytest.raises(dmf.ParameterError, match="k=26 is larger than the catalogue: 25"):
        model.recommend_new([model.items_[0]], k=26)
    with pytest.raises(dmf.ParameterError, match="use fold_in with a rating column"):
        small[0].recommend_new([small[0].items_[0]], k=2)


def test_min_support_keeps_rarely_rated_items_out_of_a_rating_models_list():
    df = pd.DataFrame({"user": [1, 1, 2, 2, 3, 3, 4], "item": [10, 20, 10, 30, 10, 20, 40],
                       "rating": [5.0, 1.0, 5.0, 2.0, 4.0, 1.0, 5.0]})  # fmt: skip
    model = dmf.Baseline(reg_user=0, reg_item=0, max_iter=1).fit(dmf.from_pandas(df))
    counts = dict(zip(model.items_, model.item_counts_, strict=True))
    got = model.recommend([4], k=2, min_support=2)["item"].tolist()
    assert all(counts[i] >= 2 for i in got) and 40 not in got
    assert 40 in model.recommend([2], k=3)["item"].tolist()  # without it, the 1-rating item
    with pytest.raises(dmf.ParameterError, match="min_support=3"):
        model.recommend([4], k=2, min_support=3)
    with pytest.raises(dmf.ParameterError, match="min_support"):
        model.recommend([4], k=1, min_support=0)
