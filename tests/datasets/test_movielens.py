"""MovieLens loading (local copies, formats, cache, verified download) — never the network."""

from __future__ import annotations

import hashlib
import io
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dmf
from dmf.datasets import _movielens


# ------------------------------------------------------------- real ML-100K
def test_movielens_100k_parsed(ml100k_dir):
    r = dmf.datasets.movielens("100k", data_home=ml100k_dir.parent, download=False)
    assert (r.n_users, r.n_items, r.nnz) == (943, 1682, 100_000)
    assert r.has_timestamps
    assert r.rating_scale == (1.0, 5.0)
    assert r.global_mean == pytest.approx(3.52986)
    df = r.to_pandas()
    assert df["timestamp"].min() == 874724710


def test_movielens_found_through_dmf_data(ml100k_dir, monkeypatch):
    monkeypatch.setenv("DMF_DATA", str(ml100k_dir.parent))
    assert dmf.datasets.movielens_path("100k", download=False) == ml100k_dir
    # data_home may also name the official folder itself
    assert dmf.datasets.movielens_path("100k", data_home=ml100k_dir, download=False) == ml100k_dir


def test_u1_split(u1, u1_frames):
    train, test = u1
    assert (train.nnz, test.nnz) == (80_000, 20_000)
    assert train.users is test.users and train.items is test.items
    assert (train.n_users, train.n_items) == (943, 1682)
    np.testing.assert_array_equal(train.row_edges, test.row_edges)
    base, _ = u1_frames
    got = train.to_pandas().sort_values(["user", "item"]).reset_index(drop=True)
    ref = base.sort_values(["user", "item"]).reset_index(drop=True)
    np.testing.assert_array_equal(
        got[["user", "item", "timestamp"]], ref[["user", "item", "timestamp"]]
    )
    np.testing.assert_allclose(got["rating"], ref["rating"])
    # u1.test has 32 ratings of items no u1.base rating mentions
    assert test.report["unseen_items"] == 32 and test.report["unseen_users"] == 0


def test_other_official_split(ml100k_dir):
    train, test = dmf.datasets.movielens("100k", split="u3", data_home=ml100k_dir.parent)
    assert (train.nnz, test.nnz) == (80_000, 20_000)
    assert train.users is test.users


def test_missing_split_file_is_named(tmp_path):
    write_release(tmp_path, "100k")
    with pytest.raises(dmf.DatasetError, match=r"ua\.base is missing"):
        dmf.datasets.movielens("100k", split="ua", data_home=tmp_path, download=False)


def test_movielens_items_100k(ml100k_dir):
    items = dmf.datasets.movielens_items("100k", data_home=ml100k_dir.parent)
    assert len(items) == 1682 and items.index.name == "item"
    assert items.loc[1, "title"] == "Toy Story (1995)"
    assert "Comedy" in items.loc[1, "genres"]


def test_bad_names():
    with pytest.raises(dmf.ParameterError, match="name"):
        dmf.datasets.movielens("200k", download=False)
    with pytest.raises(dmf.ParameterError, match="split"):
        dmf.datasets.movielens("100k", split="u9", download=False)
    with pytest.raises(dmf.ParameterError, match="only 100k"):
        dmf.datasets.movielens("1m", split="u1", download=False)
    with pytest.raises(dmf.ParameterError, match="data_home"):
        dmf.datasets.movielens("100k", data_home=3, download=False)


# ------------------------------------------------- official formats, faked
TRIPLES = [
    (1, 10, 4.0, 978300760),
    (1, 20, 3.5, 978302109),
    (2, 10, 5.0, 978301968),
    (3, 30, 1.0, 978300275),
    (3, 20, 2.5, 978824291),
]


def write_release(home: Path, name: str) -> Path:
    v = _movielens.VERSIONS[name]
    folder = home / v.folder
    folder.mkdir(parents=True)
    if v.fmt == "tab":
        lines = [f"{u}\t{i}\t{int(r)}\t{t}" for u, i, r, t in TRIPLES]
    elif v.fmt == "dat":
        lines = [f"{u}::{i}::{r:g}::{t}" for u, i, r, t in TRIPLES]
        (folder / v.items).write_text(
            "10::Toy Story (1995)::Animation|Comedy\n20::Heat: The Sequel (1995)::Action\n"
            "30::Se7en (1995)::Thriller\n",
            encoding="latin-1",
        )
    else:
        lines = ["userId,movieId,rating,timestamp"] + [f"{u},{i},{r},{t}" for u, i, r, t in TRIPLES]
        (folder / v.items).write_text(
            "movieId,title,genres\n10,Toy Story (1995),Animation|Comedy\n"
            '20,"Heat, The Sequel (1995)",Action\n30,Se7en (1995),Thriller\n'
        )
    (folder / v.ratings).write_text("\n".join(lines) + "\n")
    return folder


@pytest.mark.parametrize("name", ["1m", "10m", "20m", "25m", "latest-small"])
def test_each_official_format(tmp_path, name):
    write_release(tmp_path, name)
    r = dmf.datasets.movielens(name, data_home=tmp_path, download=False)
    df = r.to_pandas()
    ref = pd.DataFrame(TRIPLES, columns=["user", "item", "rating", "timestamp"])
    ref = ref.sort_values(["user", "item"]).reset_index(drop=True)
    np.testing.assert_array_equal(
        df[["user", "item", "timestamp"]], ref[["user", "item", "timestamp"]]
    )
    np.testing.assert_allclose(df["rating"], ref["rating"])
    items = dmf.datasets.movielens_items(name, data_home=tmp_path, download=False)
    assert items.loc[20, "title"] in ("Heat: The Sequel (1995)", "Heat, The Sequel (1995)")
    assert items.loc[10, "genres"] == "Animation|Comedy"


def test_search_order_data_home_then_env_then_cache(tmp_path, monkeypatch):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for home in (a, b, c):
        write_release(home, "1m")
    monkeypatch.setenv("DMF_DATA", str(b))
    monkeypatch.setenv("DMF_CACHE", str(c))
    assert dmf.datasets.movielens_path("1m", data_home=a, download=False) == a / "ml-1m"
    assert dmf.datasets.movielens_path("1m", download=False) == b / "ml-1m"
    monkeypatch.delenv("DMF_DATA")
    assert dmf.datasets.movielens_path("1m", download=False) == c / "ml-1m"
    assert dmf.datasets.cache_dir() == c


@pytest.fixture
def nowhere(tmp_path, monkeypatch):
    monkeypatch.setenv("DMF_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("DMF_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_offline_without_download_says_where(nowhere):
    with pytest.raises(dmf.DatasetError, match="download=False") as e:
        dmf.datasets.movielens("1m", download=False)
    msg = str(e.value)
    assert str(nowhere / "data" / "ml-1m") in msg and str(nowhere / "cache" / "ml-1m") in msg
    assert "ml-1m.zip" in msg
    assert isinstance(e.value, dmf.DMFError)


def test_download_failure_says_where(nowhere, monkeypatch):
    def offline(*a, **k):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(_movielens.urllib.request, "urlopen", offline)
    with pytest.raises(dmf.DatasetError, match=r"downloading .* failed") as e:
        dmf.datasets.movielens("100k")
    assert str(nowhere / "cache" / "ml-100k") in str(e.value)
    assert not list((nowhere / "cache").glob("*.part"))


def fake_zip(name: str) -> bytes:
    v = _movielens.VERSIONS[name]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(f"{v.folder}/{v.ratings}", "1\t10\t4\t978300760\n2\t10\t5\t978301968\n")
    return buf.getvalue()


def serve(monkeypatch, payload: bytes) -> list[str]:
    urls: list[str] = []

    def urlopen(url, timeout=None):
        urls.append(url)
        return io.BytesIO(payload)

    monkeypatch.setattr(_movielens.urllib.request, "urlopen", urlopen)
    return urls


def test_download_checksum_mismatch_is_refused(nowhere, monkeypatch):
    urls = serve(monkeypatch, fake_zip("100k"))
    with pytest.raises(dmf.DatasetError, match="checksum mismatch"):
        dmf.datasets.movielens("100k")
    assert urls == ["https://files.grouplens.org/datasets/movielens/ml-100k.zip"]
    assert not (nowhere / "cache" / "ml-100k").exists()
    assert not list((nowhere / "cache").glob("*.part"))


def test_download_verified_unpacks_into_cache(nowhere, monkeypatch):
    payload = fake_zip("100k")
    v = _movielens.VERSIONS["100k"]
    patched = _movielens._Version(**{**v.__dict__, "md5": hashlib.md5(payload).hexdigest()})
    monkeypatch.setitem(_movielens.VERSIONS, "100k", patched)
    serve(monkeypatch, payload)
    r = dmf.datasets.movielens("100k")
    assert r.nnz == 2
    assert (nowhere / "cache" / "ml-100k" / "u.data").is_file()
    # the second call finds the cached copy without downloading
    serve(monkeypatch, b"not a zip")
    assert dmf.datasets.movielens("100k").nnz == 2


def test_published_checksums_are_md5_hex():
    for v in _movielens.VERSIONS.values():
        assert v.md5 is None or (len(v.md5) == 32 and int(v.md5, 16) >= 0)


@pytest.mark.parametrize(("name", "encoding"), [("1m", "latin-1"), ("10m", "utf-8")])
def test_dat_titles_in_either_encoding(tmp_path, name, encoding):
    folder = write_release(tmp_path, name)
    (folder / "movies.dat").write_text("10::Amélie (2001)::Comedy|Romance\n", encoding=encoding)
    items = dmf.datasets.movielens_items(name, data_home=tmp_path, download=False)
    assert items.loc[10, "title"] == "Amélie (2001)"
