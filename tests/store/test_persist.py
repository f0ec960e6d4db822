"""Model stores: round trips on local and memory:// stores, crash safety, bad stores."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import dmf
from dmf.store import _persist as _persist
from dmf.testing import random_frame

#: Small, fast settings for each model kind.
SETTINGS = {
    "baseline": {"max_iter": 3},
    "als": {"rank": 4, "max_iter": 3, "seed": 1},
    "sgd": {"rank": 4, "max_iter": 3, "grid": 2, "seed": 1},
}


def _frame(ids: str) -> pd.DataFrame:
    df = random_frame(n_users=40, n_items=30, density=0.3, seed=3)
    if ids == "str":
        df["user"] = "user-" + df["user"].astype(str)
        df["item"] = "item-" + df["item"].astype(str)
    return df


def _fit(kind: str, ids: str = "int") -> dmf.Recommender:
    if kind not in dmf.METHODS:
        pytest.skip(f"dmf.METHODS has no {kind!r} yet")
    train = dmf.from_pandas(_frame(ids), chunk_nnz=100)
    return dmf.fit(train, method=kind, **SETTINGS[kind])


def _url(where: str, tmp_path) -> str:
    if where == "memory":
        return f"memory://dmf-tests/{uuid.uuid4().hex}/model.zarr"
    return str(tmp_path / "model.zarr")


def _all_pairs(model: dmf.Recommender) -> tuple[np.ndarray, np.ndarray]:
    u = np.repeat(model.users_.to_numpy(dtype=object), len(model.items_))
    i = np.tile(model.items_.to_numpy(dtype=object), len(model.users_))
    return u, i


@pytest.mark.parametrize("where", ["local", "memory"])
@pytest.mark.parametrize("ids", ["int", "str"])
@pytest.mark.parametrize("kind", ["baseline", "als", "sgd"])
def test_round_trip_same_class_same_predictions(kind, ids, where, tmp_path):
    model = _fit(kind, ids)
    url = model.save(_url(where, tmp_path))
    back = dmf.load(url)
    assert type(back) is type(model)
    assert back.get_params().keys() == model.get_params().keys()
    assert list(back.users_) == list(model.users_)
    assert list(back.items_) == list(model.items_)
    u, i = _all_pairs(model)
    np.testing.assert_array_equal(back.predict(u, i), model.predict(u, i))
    np.testing.assert_array_equal(back.user_counts_, model.user_counts_)
    assert back.global_mean_ == model.global_mean_
    assert back.rating_scale_ == model.rating_scale_
    assert len(back.history_) == len(model.history_)
    if model.user_factors_ is not None:
        np.testing.assert_array_equal(back.user_factors_, model.user_factors_)
        np.testing.assert_array_equal(back.item_factors_, model.item_factors_)
        assert back.user_factors_.dtype == model.user_factors_.dtype
    # Unseen ids still fall back the same way after loading.
    np.testing.assert_array_equal(
        back.predict([u[0], u[0]], [i[0], i[1]], cold_start="nan"),
        model.predict([u[0], u[0]], [i[0], i[1]], cold_start="nan"),
    )
    # The loaded model can be saved again.
    back.save(url, overwrite=True)
    assert type(dmf.load(url)) is type(model)


def test_loaded_params_equal_for_baseline(tmp_path):
    model = _fit("baseline")
    back = dmf.load(model.save(tmp_path / "m.zarr"))
    assert back.get_params() == model.get_params()


@pytest.mark.parametrize("kind", ["baseline", "als"])
def test_plain_xarray_reads_the_layout(kind, tmp_path):
    model = _fit(kind, "str")
    path = model.save(tmp_path / "m.zarr")
    ds = xr.open_zarr(path, consolidated=False)
    assert ds["user_bias"].dims == ("user",)
    assert ds["item_counts"].dims == ("item",)
    assert list(ds["user"].values) == list(model.users_)
    assert ds.attrs["dmf_kind"] == kind
    assert ds.attrs["dmf_complete"] is True
    assert ds.attrs["dmf_format"] == _persist.FORMAT_VERSION
    assert "reg" in json.loads(ds.attrs["params"]) if kind == "als" else True
    train = json.loads(ds.attrs["train"])
    assert train["nnz"] == int(model.user_counts_.sum())
    assert len(train["fingerprint"]) == 64
    # A prediction from the raw arrays matches the model's (unclipped) one.
    u, i = model.users_[2], model.items_[3]
    raw = ds.attrs["global_mean"] + ds["user_bias"].sel(user=u) + ds["item_bias"].sel(item=i)
    if kind == "als":
        assert ds["user_factors"].dims == ("user", "factor")
        raw = raw + (ds["user_factors"].sel(user=u) * ds["item_factors"].sel(item=i)).sum()
    assert float(raw) == pytest.approx(float(model.predict(u, i, clip=False)[0]), abs=1e-5)


def test_to_xarray_is_chunked_along_fit_blocks():
    model = _fit("als")
    n_blocks = len(model.row_edges_) - 1
    assert n_blocks > 1
    ds = model.to_xarray(chunked=True)
    assert len(ds["user_factors"].chunks[0]) == n_blocks
    plain = model.to_xarray()
    assert isinstance(plain["user_factors"].data, np.ndarray)
    np.testing.assert_array_equal(plain["user_factors"].values, model.user_factors_)


def test_save_is_one_parallel_dask_write(tmp_path):
    """Every chunk is written by its own task of the to_zarr graph."""
    from dask.callbacks import Callback

    model = _fit("als")
    keys: list[str] = []

    class Spy(Callback):
        def _start_state(self, dsk, state):
            keys.extend(str(k) for k in dsk)

    with Spy():
        model.save(tmp_path / "m.zarr")
    n_blocks = len(model.row_edges_) - 1
    stores = [k for k in keys if "store" in k.lower()]
    assert len(stores) >= 2 * n_blocks, keys[:20]


def test_existing_path_needs_overwrite(tmp_path):
    model = _fit("baseline")
    path = model.save(tmp_path / "m.zarr")
    with pytest.raises(dmf.StoreError, match="overwrite=True"):
        model.save(path)
    other = dmf.Baseline(reg_user=0.0).fit(dmf.from_pandas(_frame("int")))
    other.save(path, overwrite=True)
    assert dmf.load(path).reg_user == 0.0
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no leftovers


def test_overwrite_never_deletes_foreign_data(tmp_path):
    model = _fit("baseline")
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"meow")
    with pytest.raises(dmf.StoreError, match="not a dmf model store"):
        model.save(foreign, overwrite=True)
    assert (foreign / "cat.jpg").exists()


def test_save_into_empty_directory(tmp_path):
    model = _fit("baseline")
    (tmp_path / "m.zarr").mkdir()
    dmf.load(model.save(tmp_path / "m.zarr"))


def test_unfitted_and_bad_arguments(tmp_path):
    with pytest.raises(dmf.NotFittedError):
        dmf.Baseline().save(tmp_path / "x.zarr")
    model = _fit("baseline")
    with pytest.raises(dmf.ParameterError, match="overwrite"):
        model.save(tmp_path / "x.zarr", overwrite="yes")
    with pytest.raises(dmf.ParameterError, match="path"):
        model.save("")


# ------------------------------------------------------------- bad stores
@pytest.fixture
def saved(tmp_path):
    model = _fit("als")
    return model, model.save(tmp_path / "m.zarr")


def _edit_root_attrs(path: str, **changes) -> None:
    meta_path = os.path.join(path, "zarr.json")
    with open(meta_path) as f:
        meta = json.load(f)
    for k, v in changes.items():
        if v is None:
            meta["attributes"].pop(k, None)
        else:
            meta["attributes"][k] = v
    with open(meta_path, "w") as f:
        json.dump(meta, f)


def test_future_format_is_refused(saved):
    _, path = saved
    _edit_root_attrs(path, dmf_format=_persist.FORMAT_VERSION + 1)
    with pytest.raises(dmf.StoreError, match="newer than this dmf"):
        dmf.load(path)


def test_missing_completion_mark_is_refused(saved):
    _, path = saved
    _edit_root_attrs(path, dmf_complete=None)
    with pytest.raises(dmf.StoreError, match="incomplete"):
        dmf.load(path)


@pytest.mark.parametrize("var", ["item_factors", "user_bias", "user_counts"])
def test_missing_variable_is_refused(saved, var):
    import shutil

    _, path = saved
    shutil.rmtree(os.path.join(path, var))
    with pytest.raises(dmf.StoreError, match=var):
        dmf.load(path)


def test_unknown_kind_is_refused(saved):
    _, path = saved
    _edit_root_attrs(path, dmf_kind="quantum")
    with pytest.raises(dmf.StoreError, match="quantum"):
        dmf.load(path)


def test_malformed_attributes_are_refused(saved):
    _, path = saved
    _edit_root_attrs(path, params="{not json")
    with pytest.raises(dmf.StoreError, match="params"):
        dmf.load(path)


def test_not_a_dmf_store(tmp_path):
    with pytest.raises(dmf.StoreError, match="no model store"):
        dmf.load(tmp_path / "nothing.zarr")
    xr.Dataset({"a": ("x", np.arange(3))}).to_zarr(
        tmp_path / "plain.zarr", zarr_format=3, consolidated=False
    )
    with pytest.raises(dmf.StoreError, match="not a dmf model store"):
        dmf.load(tmp_path / "plain.zarr")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "notes.txt").write_text("hello")
    with pytest.raises(dmf.StoreError):
        dmf.load(tmp_path / "dir")
    (tmp_path / "file.zarr").write_text("hello")
    with pytest.raises(dmf.StoreError):
        dmf.load(tmp_path / "file.zarr")
    with pytest.raises(dmf.StoreError, match="no model store"):
        dmf.load(f"memory://dmf-tests/{uuid.uuid4().hex}")


def test_interrupted_object_store_save_is_refused(monkeypatch):
    """On stores without rename the completion mark is the last write: no mark, no load."""
    model = _fit("als")
    url = f"memory://dmf-tests/{uuid.uuid4().hex}/m.zarr"

    def crash(loc):
        raise KeyboardInterrupt("killed before the mark")

    monkeypatch.setattr(_persist, "_mark_complete", crash)
    with pytest.raises(KeyboardInterrupt):
        model.save(url)
    monkeypatch.undo()
    with pytest.raises(dmf.StoreError, match="incomplete"):
        dmf.load(url)
    # A later save over the broken store works with overwrite=True.
    model.save(url, overwrite=True)
    dmf.load(url)


# ------------------------------------------------- SIGKILL of a saving process
_KILLED_SAVE = textwrap.dedent(
    """
    import sys, time
    import numpy as np, zarr
    import dmf
    from dmf.testing import random_ratings

    path, stage = sys.argv[1], sys.argv[2]
    model = dmf.Baseline(max_iter=1).fit(random_ratings(n_users=50, n_items=40, seed=0))
    # A big fake factor model, so the write has many chunks.
    rng = np.random.default_rng(0)
    model.user_factors_ = rng.standard_normal((50, 4000)).astype(np.float32)
    model.item_factors_ = rng.standard_normal((40, 4000)).astype(np.float32)
    if len(sys.argv) > 3:
        model.save(path)  # a complete store that the killed overwrite must not harm
        print("FIRST", flush=True)
    if stage == "chunks":
        original = zarr.Array.__setitem__
        calls = []
        def slow(self, key, value):
            original(self, key, value)
            calls.append(1)
            if len(calls) == 3:
                print("WRITING", flush=True)
                time.sleep(600)
        zarr.Array.__setitem__ = slow
        import dask
        dask.config.set(scheduler="sync")
    else:
        import dmf.store._persist as p
        def hang(loc):
            print("WRITING", flush=True)
            time.sleep(600)
        p._mark_complete = hang
    model.save(path, overwrite=len(sys.argv) > 3)
    """
)


def _kill_while_saving(path: str, stage: str, *extra: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_SAVE, path, stage, *extra],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        for line in proc.stdout:
            if line.strip() == "WRITING":
                break
            assert time.monotonic() < deadline
        else:
            pytest.fail(f"the saving process ended early (rc {proc.wait()})")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def test_sigkilled_save_leaves_nothing_loadable(tmp_path):
    path = str(tmp_path / "m.zarr")
    _kill_while_saving(path, "chunks")
    with pytest.raises(dmf.StoreError):
        dmf.load(path)
    # The next save cleans up and succeeds.
    _fit("baseline").save(path)
    dmf.load(path)


def test_sigkilled_overwrite_keeps_previous_store(tmp_path):
    path = str(tmp_path / "m.zarr")
    _kill_while_saving(path, "chunks", "overwrite")
    model = dmf.load(path)  # the first, complete save is intact
    assert model.user_factors_.shape == (50, 4000)


# Last in the file: the session client fixture stays current once created.
def test_save_on_distributed_client(client, tmp_path):
    import dask

    with dask.config.set(scheduler="threads"):
        model = _fit("baseline")
    rng = np.random.default_rng(0)
    model.user_factors_ = rng.standard_normal((len(model.users_), 3)).astype(np.float32)
    model.item_factors_ = rng.standard_normal((len(model.items_), 3)).astype(np.float32)
    with client.as_current():
        path = model.save(tmp_path / "m.zarr")
    back = dmf.load(path)
    np.testing.assert_array_equal(back.user_factors_, model.user_factors_)
