"""Checkpoints: crash-safe saves, newest complete one wins, SIGKILLed fits resume exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import dask
import numpy as np
import pytest
import zarr

import dmf
from dmf.store import _checkpoint as _checkpoint
from dmf.store._checkpoint import load_checkpoint, save_checkpoint
from dmf.testing import random_frame


@pytest.fixture(params=["local", "memory"])
def ckpt(request, tmp_path) -> str:
    if request.param == "memory":
        return f"memory://dmf-tests/{uuid.uuid4().hex}/ckpt.zarr"
    return str(tmp_path / "ckpt.zarr")


def _arrays(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "user_factors": rng.standard_normal((7, 3)).astype(np.float32),
        "item_bias": rng.standard_normal(5),
        "counts": np.arange(4, dtype=np.int64),
        "scalar": np.float64(seed),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }


def test_round_trip(ckpt):
    assert load_checkpoint(ckpt) is None
    rng = np.random.default_rng(4)
    state = {
        "history": [{"iteration": 1, "loss": 0.5, "val": float("nan")}],
        "lr": np.float32(0.25),
        "rng": rng.bit_generator.state,
        "seed": np.int64(7),
    }
    arrays = _arrays(1)
    save_checkpoint(ckpt, 1, arrays, state)
    it, back, st = load_checkpoint(ckpt)
    assert it == 1
    assert sorted(back) == sorted(arrays)
    for name, a in arrays.items():
        np.testing.assert_array_equal(back[name], a)
        assert back[name].dtype == np.asarray(a).dtype
        assert back[name].shape == np.asarray(a).shape
    assert np.isnan(st["history"][0]["val"])
    assert st["lr"] == 0.25 and st["seed"] == 7
    # The RNG state round-trips exactly: the same draws follow.
    again = np.random.default_rng()
    again.bit_generator.state = st["rng"]
    assert again.random() == rng.random()


def test_newest_complete_wins_and_older_are_removed(ckpt):
    for it in (1, 2, 3):
        save_checkpoint(ckpt, it, _arrays(it), {"it": it})
    it, arrays, state = load_checkpoint(ckpt)
    assert (it, state) == (3, {"it": 3})
    np.testing.assert_array_equal(arrays["user_factors"], _arrays(3)["user_factors"])
    # Saving the same iteration again replaces it.
    save_checkpoint(ckpt, 3, _arrays(9), {"it": "again"})
    assert load_checkpoint(ckpt)[2] == {"it": "again"}
    # A restarted fit (fresh, lower iteration) replaces the stale higher ones.
    save_checkpoint(ckpt, 1, _arrays(1), {"it": 1})
    assert load_checkpoint(ckpt)[0] == 1
    fs, root = _fs(ckpt)
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(root, detail=False))
    assert len(names) == 2 and names[0].startswith("iter-00000001") and names[1] == "zarr.json"


def _fs(path: str):
    import fsspec

    return fsspec.core.url_to_fs(path)


@pytest.mark.parametrize("when", ["arrays", "mark"])
def test_interrupted_save_keeps_previous(ckpt, monkeypatch, when):
    save_checkpoint(ckpt, 1, _arrays(1), {"it": 1})
    import zarr

    if when == "arrays":
        original = zarr.Array.__setitem__
        calls = []

        def boom(self, key, value):
            calls.append(1)
            if len(calls) == 2:
                raise KeyboardInterrupt("killed mid-write")
            original(self, key, value)

        monkeypatch.setattr(zarr.Array, "__setitem__", boom)
    else:

        def boom(*args, **kwargs):
            raise KeyboardInterrupt("killed before the mark")

        monkeypatch.setattr(zarr.core.attributes.Attributes, "update", boom)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(ckpt, 2, _arrays(2), {"it": 2})
    monkeypatch.undo()
    it, _, state = load_checkpoint(ckpt)
    assert (it, state) == (1, {"it": 1})
    # The next complete save supersedes both and cleans up.
    save_checkpoint(ckpt, 2, _arrays(2), {"it": 2})
    assert load_checkpoint(ckpt)[0] == 2


def test_only_an_interrupted_save_is_no_checkpoint(ckpt, monkeypatch):
    import zarr

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(zarr.core.attributes.Attributes, "update", boom)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(ckpt, 1, _arrays(1), {})
    monkeypatch.undo()
    assert load_checkpoint(ckpt) is None


def test_large_arrays_are_split_into_chunks(monkeypatch, ckpt):
    monkeypatch.setattr(_checkpoint, "_CHUNK_BYTES", 1000)
    big = np.arange(3000, dtype=np.float32).reshape(300, 10)
    save_checkpoint(ckpt, 1, {"big": big}, {})
    np.testing.assert_array_equal(load_checkpoint(ckpt)[1]["big"], big)
    fs, root = _fs(ckpt)
    assert len([p for p in fs.find(root) if "/big/c/" in p]) == 12  # 25 rows per chunk


def test_empty_directory_is_no_checkpoint(tmp_path):
    (tmp_path / "c").mkdir()
    assert load_checkpoint(str(tmp_path / "c")) is None


def test_foreign_store_is_refused(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "thesis.tex").write_text("important")
    with pytest.raises(dmf.StoreError):
        load_checkpoint(str(tmp_path / "d"))
    with pytest.raises(dmf.StoreError):
        save_checkpoint(str(tmp_path / "d"), 1, _arrays(1), {})
    assert (tmp_path / "d" / "thesis.tex").read_text() == "important"
    import xarray as xr

    xr.Dataset({"a": ("x", np.arange(3))}).to_zarr(
        tmp_path / "x.zarr", zarr_format=3, consolidated=False
    )
    with pytest.raises(dmf.StoreError, match="not a dmf checkpoint"):
        load_checkpoint(str(tmp_path / "x.zarr"))


def test_future_format_is_refused(tmp_path):
    path = str(tmp_path / "c.zarr")
    save_checkpoint(path, 1, _arrays(1), {})
    meta_path = os.path.join(path, "zarr.json")
    meta = json.load(open(meta_path))
    meta["attributes"]["dmf_checkpoint"] = _checkpoint.CHECKPOINT_FORMAT + 1
    json.dump(meta, open(meta_path, "w"))
    with pytest.raises(dmf.StoreError, match="newer"):
        load_checkpoint(path)


def test_corrupt_checkpoint_is_refused(tmp_path):
    path = str(tmp_path / "c.zarr")
    save_checkpoint(path, 1, _arrays(1), {})
    chunk = os.path.join(path, "iter-00000001", "user_factors", "c", "0", "0")
    with open(chunk, "wb") as f:
        f.write(b"garbage")
    with pytest.raises(dmf.StoreError, match="user_factors"):
        load_checkpoint(path)


def test_bad_arguments(tmp_path):
    path = str(tmp_path / "c.zarr")
    with pytest.raises(dmf.ParameterError, match="iteration"):
        save_checkpoint(path, -1, {}, {})
    with pytest.raises(dmf.ParameterError, match="JSON"):
        save_checkpoint(path, 1, {}, {"f": object()})
    with pytest.raises(dmf.ParameterError, match="identifier"):
        save_checkpoint(path, 1, {"a/b": np.zeros(2)}, {})
    with pytest.raises(dmf.ParameterError, match="object"):
        save_checkpoint(path, 1, {"a": np.array(["x", 1], dtype=object)}, {})


# --------------------------------------- SIGKILL mid-fit, then resume=True
PARAMS = {
    "als": {"rank": 4, "max_iter": 6, "seed": 1},
    "sgd": {"rank": 4, "max_iter": 6, "grid": 2, "seed": 1},
}

_FIT_AND_DIE = textwrap.dedent(
    """
    import sys, time, json
    import dask, zarr
    import dmf
    from dmf.store import _checkpoint as _checkpoint
    from dmf.testing import random_frame

    kind, path, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    train = dmf.from_pandas(random_frame(n_users=80, n_items=60, seed=5), chunk_nnz=400)
    done = []
    prune = _checkpoint._prune
    def counting_prune(loc, keep):  # runs once a checkpoint is complete
        prune(loc, keep)
        done.append(keep)
    _checkpoint._prune = counting_prune
    setitem = zarr.Array.__setitem__
    def stall(self, key, value):  # third checkpoint: stall after its first array
        setitem(self, key, value)
        if len(done) >= 2:
            print("KILLME", flush=True)
            time.sleep(600)
    zarr.Array.__setitem__ = stall
    with dask.config.set(scheduler="threads"):
        dmf.fit(train, method=kind, checkpoint=path, checkpoint_every=1, **params)
    print("FINISHED", flush=True)
    """
)


def _train():
    return dmf.from_pandas(random_frame(n_users=80, n_items=60, seed=5), chunk_nnz=400)


@pytest.mark.parametrize("kind", ["als", "sgd"])
def test_sigkilled_fit_resumes_to_the_uninterrupted_result(kind, tmp_path):
    if kind not in dmf.METHODS:
        pytest.skip(f"dmf.METHODS has no {kind!r} yet (its helper has not landed)")
    path = str(tmp_path / "ckpt.zarr")
    proc = subprocess.Popen(
        [sys.executable, "-c", _FIT_AND_DIE, kind, path, json.dumps(PARAMS[kind])],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        for line in proc.stdout:
            if line.strip() == "KILLME":
                break
            assert time.monotonic() < deadline, "the fitting process never reached iteration 3"
        else:
            pytest.fail(f"the fitting process ended before the kill (rc {proc.wait()})")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # Killed while writing checkpoint 3: checkpoint 2 is the newest complete one.
    it, _, _ = load_checkpoint(path)
    assert it == 2

    with dask.config.set(scheduler="threads"):
        train = _train()
        resumed = dmf.fit(train, method=kind, checkpoint=path, resume=True, **PARAMS[kind])
        straight = dmf.fit(train, method=kind, **PARAMS[kind])
    assert len(resumed.history_) == len(straight.history_)
    if kind == "sgd":  # bit-identical
        np.testing.assert_array_equal(resumed.user_factors_, straight.user_factors_)
        np.testing.assert_array_equal(resumed.item_factors_, straight.item_factors_)
        np.testing.assert_array_equal(resumed.user_bias_, straight.user_bias_)
        np.testing.assert_array_equal(resumed.item_bias_, straight.item_bias_)
    else:
        np.testing.assert_allclose(resumed.user_factors_, straight.user_factors_, atol=1e-5)
        np.testing.assert_allclose(resumed.item_factors_, straight.item_factors_, atol=1e-5)
        np.testing.assert_allclose(resumed.user_bias_, straight.user_bias_, atol=1e-5)
        np.testing.assert_allclose(resumed.item_bias_, straight.item_bias_, atol=1e-5)
    # The finished fit left its last iteration as the newest checkpoint.
    n_final = PARAMS[kind].get("max_iter", PARAMS[kind].get("n_epochs"))
    assert load_checkpoint(path)[0] == n_final


def test_interrupted_resave_of_the_same_iteration_keeps_the_old_one(ckpt, monkeypatch):
    import zarr

    save_checkpoint(ckpt, 2, _arrays(2), {"it": "first"})

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(zarr.core.attributes.Attributes, "update", boom)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(ckpt, 2, _arrays(3), {"it": "second"})
    monkeypatch.undo()
    assert load_checkpoint(ckpt)[2] == {"it": "first"}


def test_dask_arrays_are_written_block_by_block(tmp_path, monkeypatch):
    """Factors held as Dask arrays (on the workers, in a sharded fit) checkpoint as NumPy would."""
    import dask.array as da

    monkeypatch.setattr(_checkpoint, "_CHUNK_BYTES", 10_000 * 8 * 4)  # Zarr chunks of 10K rows
    rng = np.random.default_rng(0)
    u = rng.normal(size=(70_001, 8)).astype(np.float32)
    path = str(tmp_path / "ckpt.zarr")
    save_checkpoint(
        path, 2, {"u": da.from_array(u, chunks=((30_000, 40_001), (8,))), "b": u[:, 0]}, {}
    )
    it, arrays, _ = load_checkpoint(path)
    assert it == 2
    stored = [n for n in os.listdir(tmp_path / "ckpt.zarr") if n.startswith("iter-")]
    assert zarr.open_array(str(tmp_path / "ckpt.zarr" / stored[0] / "u")).chunks == (10_000, 8)
    np.testing.assert_array_equal(arrays["u"], u)
    np.testing.assert_array_equal(arrays["b"], u[:, 0])
