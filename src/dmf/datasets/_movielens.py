"""MovieLens ratings (GroupLens) from a local copy, the cache or the official archive.

Where a data set is looked for, in order: ``data_home``, ``$DMF_DATA``, the
cache (``$DMF_CACHE``, else ``~/.cache/dmf``). Each may hold the unpacked
official folder (``ml-100k/``, ``ml-1m/``, ``ml-10M100K/``, ``ml-20m/``,
``ml-25m/``, ``ml-latest-small/``) or be that folder itself. Only when none
has it is the official zip downloaded into the cache, its MD5 checked against
the value GroupLens publishes beside it (``<zip>.md5``), and unpacked.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from dmf._errors import DatasetError, ParameterError, check_choice
from dmf.data._build import _build
from dmf.data._clean import _Spec
from dmf.data._ratings import Ratings
from dmf.data._split import unseen_report

if TYPE_CHECKING:
    import dask.dataframe as dd

__all__ = ["cache_dir", "movielens", "movielens_items", "movielens_path"]

_BASE_URL = "https://files.grouplens.org/datasets/movielens/"
_COLUMNS = ["user", "item", "rating", "timestamp"]


@dataclass(frozen=True)
class _Version:
    folder: str  # the folder the official zip unpacks to
    archive: str  # the official zip's file name
    md5: str | None  # GroupLens's published MD5 of the zip (None: not published / changes)
    ratings: str
    fmt: str  # "tab" (u.data), "dat" ("::"-separated), "csv" (with header)
    items: str
    size: str  # rough download size, for messages
    scale: tuple[float, float] = (0.5, 5.0)  # the stars this release allows


#: The official archives. MD5 values are the ones GroupLens publishes in the
#: ``<archive>.md5`` files beside each zip. ``ml-latest-small`` is re-issued from
#: time to time, so it has no fixed checksum (the download is only checked to
#: be a readable zip holding the expected files).
VERSIONS: dict[str, _Version] = {
    "100k": _Version(
        "ml-100k",
        "ml-100k.zip",
        "0e33842e24a9c977be4e0107933c0723",
        "u.data",
        "tab",
        "u.item",
        "5 MB",
        (1.0, 5.0),
    ),
    "1m": _Version(
        "ml-1m",
        "ml-1m.zip",
        "c4d9eecfca2ab87c1945afe126590906",
        "ratings.dat",
        "dat",
        "movies.dat",
        "6 MB",
        (1.0, 5.0),
    ),
    "10m": _Version(
        "ml-10M100K",
        "ml-10m.zip",
        "ce571fd55effeba0271552578f2648bd",
        "ratings.dat",
        "dat",
        "movies.dat",
        "63 MB",
    ),
    "20m": _Version(
        "ml-20m",
        "ml-20m.zip",
        "cd245b17a1ae2cc31bb14903e1204af3",
        "ratings.csv",
        "csv",
        "movies.csv",
        "190 MB",
    ),
    "25m": _Version(
        "ml-25m",
        "ml-25m.zip",
        "6b51fb2759a8657d3bfcbfc42b592ada",
        "ratings.csv",
        "csv",
        "movies.csv",
        "250 MB",
    ),
    "latest-small": _Version(
        "ml-latest-small",
        "ml-latest-small.zip",
        None,
        "ratings.csv",
        "csv",
        "movies.csv",
        "1 MB",
    ),
}

#: Official train/test splits shipped with MovieLens 100K.
SPLITS_100K = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")


def cache_dir() -> Path:
    """Where downloads go: ``$DMF_CACHE`` if set, else ``~/.cache/dmf``.

    Examples
    --------
    >>> import os, dmf
    >>> old = os.environ.get("DMF_CACHE")
    >>> os.environ["DMF_CACHE"] = "/tmp/dmf-cache"
    >>> str(dmf.datasets.cache_dir())
    '/tmp/dmf-cache'
    >>> if old is None:
    ...     del os.environ["DMF_CACHE"]
    ... else:
    ...     os.environ["DMF_CACHE"] = old
    """
    env = os.environ.get("DMF_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dmf"


def _candidates(data_home: Any) -> list[Path]:
    out: list[Path] = []
    if data_home is not None:
        if not isinstance(data_home, (str, os.PathLike)):
            raise ParameterError(
                f"data_home={data_home!r} is not allowed: data_home must be a path or None"
            )
        out.append(Path(os.fspath(data_home)).expanduser())
    env = os.environ.get("DMF_DATA")
    if env:
        out.append(Path(env).expanduser())
    out.append(cache_dir())
    return out


def _find(v: _Version, data_home: Any) -> Path | None:
    for home in _candidates(data_home):
        for folder in (home / v.folder, home):
            if (folder / v.ratings).is_file():
                return folder
    return None


def _check_name(name: Any) -> _Version:
    check_choice("name", name, list(VERSIONS))
    return VERSIONS[name]


def movielens_path(name: str, data_home: Any = None, download: bool = True) -> Path:
    """The local folder of a MovieLens data set, downloading it into the cache if needed.

    Parameters
    ----------
    name : {"100k", "1m", "10m", "20m", "25m", "latest-small"}
    data_home : path, optional
        Looked in first (then ``$DMF_DATA``, then the cache).
    download : bool
        Allow downloading the official archive when no local copy exists.

    Returns
    -------
    pathlib.Path
        The unpacked official folder (e.g. ``.../ml-100k``).

    Raises
    ------
    dmf.DatasetError
        Not found locally and ``download=False`` or the download failed (the
        message says where to put the files), or the archive's checksum differs.

    Examples
    --------
    >>> import dmf
    >>> dmf.datasets.movielens_path("100k").name  # doctest: +SKIP
    'ml-100k'
    """
    v = _check_name(name)
    found = _find(v, data_home)
    if found is not None:
        return found
    places = [str(p / v.folder) for p in _candidates(data_home)]
    where = (
        f"Put the unpacked official folder (holding {v.ratings}) at one of: "
        + ", ".join(places)
        + f"; it is {_BASE_URL}{v.archive} unzipped."
    )
    if not download:
        raise DatasetError(f"MovieLens {name} not found locally and download=False. {where}")
    return _download(v, name, where)


def _download(v: _Version, name: str, where: str) -> Path:
    cache = cache_dir()
    url = _BASE_URL + v.archive
    tmp = None
    try:
        cache.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=v.archive, suffix=".part", dir=cache)
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
            shutil.copyfileobj(resp, out, length=1 << 20)
    except OSError as e:  # URLError is an OSError
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise DatasetError(
            f"MovieLens {name} not found locally and downloading {url} failed "
            f"({type(e).__name__}: {e}). {where}"
        ) from e
    try:
        if v.md5 is not None:
            got = _md5(Path(tmp))
            if got != v.md5:
                raise DatasetError(
                    f"checksum mismatch for {url}: MD5 {got}, expected {v.md5} (the value "
                    f"GroupLens publishes in {v.archive}.md5); the file was not kept. {where}"
                )
        try:
            with zipfile.ZipFile(tmp) as zf:
                names = zf.namelist()
                if f"{v.folder}/{v.ratings}" not in names:
                    raise DatasetError(
                        f"{url} does not hold {v.folder}/{v.ratings}; got {names[:5]}. {where}"
                    )
                staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=cache))
                zf.extractall(staging)
        except zipfile.BadZipFile as e:
            raise DatasetError(f"{url} is not a valid zip archive ({e}). {where}") from e
        target = cache / v.folder
        if not target.exists():
            os.replace(staging / v.folder, target)
        shutil.rmtree(staging, ignore_errors=True)
        return target
    finally:
        Path(tmp).unlink(missing_ok=True)


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _frame(path: Path, fmt: str) -> dd.DataFrame:
    """A Dask frame ``user, item, rating, timestamp`` of one official ratings file."""
    import dask.dataframe as dd  # seconds to import: only where a file is read

    dtypes = {"user": "int64", "item": "int64", "rating": "float64", "timestamp": "int64"}
    if fmt == "tab":
        return dd.read_csv(path, sep="\t", header=None, names=_COLUMNS, dtype=dtypes)
    if fmt == "dat":
        # "u::i::r::t": split on single ':' (the fast C parser) and keep every other field.
        return dd.read_csv(
            path,
            sep=":",
            header=None,
            names=["user", "_a", "item", "_b", "rating", "_c", "timestamp"],
            usecols=_COLUMNS,
            dtype=dtypes,
        )[_COLUMNS]
    ddf = dd.read_csv(path, header=0, dtype={"userId": "int64", "movieId": "int64"})
    ddf = ddf.rename(columns={"userId": "user", "movieId": "item"})
    return ddf[_COLUMNS]


def _ratings_from(
    ddf: dd.DataFrame, scale: tuple[float, float], chunk_nnz: int | None, layout: Any = None
) -> Ratings:
    spec = _Spec("user", "item", "rating", "timestamp", "raise", "raise", scale)
    spec.check_columns(list(ddf.columns), ddf.dtypes)
    return _build(ddf.to_delayed(), spec, chunk_nnz, layout)


def movielens(
    name: str = "100k",
    split: str | None = None,
    data_home: Any = None,
    download: bool = True,
    *,
    chunk_nnz: int | None = None,
) -> Ratings | tuple[Ratings, Ratings]:
    """MovieLens ratings as :class:`dmf.Ratings`, with timestamps.

    Parameters
    ----------
    name : {"100k", "1m", "10m", "20m", "25m", "latest-small"}
        Which release. Formats parsed: ``u.data`` (tab-separated, 100K),
        ``ratings.dat`` (``::``-separated, 1M and 10M), ``ratings.csv`` (with a
        header, 20M, 25M and latest-small).
    split : {"u1", ..., "u5", "ua", "ub"}, optional
        100K only: the official split files (``u1.base``/``u1.test``, ...),
        returned as ``(train, test)``. Both use the id maps and row edges of the
        full data set, so a code means the same user/item in each.
    data_home : path, optional
        A folder holding the unpacked official folder (or that folder itself);
        looked in before ``$DMF_DATA`` and the cache (``$DMF_CACHE`` or
        ``~/.cache/dmf``).
    download : bool
        When no local copy exists, download the official zip into the cache and
        verify its MD5 (as published by GroupLens). ``False``: raise instead.
    chunk_nnz : int, optional
        Target ratings per row block (see :func:`dmf.from_pandas`).

    Returns
    -------
    Ratings, or (Ratings, Ratings) with ``split``
        ``rating_scale`` is the stars the release allows (``(1, 5)`` for 100K
        and 1M, ``(0.5, 5)`` for the half-star releases); the test
        part's ``report`` counts test ratings whose user or item has no
        training rating.

    Raises
    ------
    dmf.DatasetError
        Not available locally and not downloadable; the message says where to
        put the files.
    dmf.ParameterError
        Unknown ``name`` or ``split``.

    Examples
    --------
    >>> import dmf
    >>> r = dmf.datasets.movielens("100k")  # doctest: +SKIP
    >>> r.n_users, r.n_items, r.nnz  # doctest: +SKIP
    (943, 1682, 100000)
    >>> train, test = dmf.datasets.movielens("100k", split="u1")  # doctest: +SKIP
    >>> train.nnz, test.nnz  # doctest: +SKIP
    (80000, 20000)
    """
    v = _check_name(name)
    if split is not None:
        if name != "100k":
            raise ParameterError(
                f"split={split!r} is not allowed for MovieLens {name}: only 100k ships official "
                "splits; use dmf.split.random / by_user / temporal instead"
            )
        check_choice("split", split, SPLITS_100K)
    folder = movielens_path(name, data_home, download)
    full = _ratings_from(_frame(folder / v.ratings, v.fmt), v.scale, chunk_nnz)
    full.report["source"] = str(folder / v.ratings)
    if split is None:
        return full
    for part in ("base", "test"):
        if not (folder / f"{split}.{part}").is_file():
            raise DatasetError(f"{folder / f'{split}.{part}'} is missing from {folder}")
    layout = (full.users, full.items, full.row_edges)
    train = _ratings_from(_frame(folder / f"{split}.base", "tab"), v.scale, chunk_nnz, layout)
    test = _ratings_from(_frame(folder / f"{split}.test", "tab"), v.scale, chunk_nnz, layout)
    train.report["source"] = str(folder / f"{split}.base")
    test.report["source"] = str(folder / f"{split}.test")
    test.report.update(unseen_report(train, test))
    return train, test


def movielens_items(
    name: str = "100k", data_home: Any = None, download: bool = True
) -> pd.DataFrame:
    """Movie titles (and genres where the release lists them) indexed by item id.

    Parameters
    ----------
    name, data_home, download
        As in :func:`movielens`.

    Returns
    -------
    pandas.DataFrame
        Index ``item`` (the ids used by :func:`movielens`), columns ``title``
        and ``genres`` (``"|"``-joined genre names).

    Examples
    --------
    >>> import dmf
    >>> dmf.datasets.movielens_items("100k").loc[1, "title"]  # doctest: +SKIP
    'Toy Story (1995)'
    """
    v = _check_name(name)
    return read_movielens_items(movielens_path(name, data_home, download) / v.items)


def read_movielens_items(path: Any) -> pd.DataFrame:
    """Titles and genres from a MovieLens item file: ``u.item``, ``movies.dat`` or ``movies.csv``.

    The format is told by the file's name; the frame is the one
    :func:`movielens_items` returns (index ``item``, columns ``title``, ``genres``).

    Examples
    --------
    >>> import dmf
    >>> from dmf.datasets import read_movielens_items
    >>> path = dmf.datasets.movielens_path("100k", download=False) / "u.item"  # doctest: +SKIP
    >>> read_movielens_items(path).loc[1, "title"]  # doctest: +SKIP
    'Toy Story (1995)'
    """
    path = Path(path)
    folder = path.parent
    if path.name == "u.item":
        genre_names = _genres_100k(folder)
        raw = pd.read_csv(path, sep="|", header=None, encoding="latin-1")
        flags = raw.iloc[:, 5:].to_numpy(dtype=bool)
        names = np.array(genre_names[: flags.shape[1]], dtype=object)
        genres = ["|".join(names[row]) for row in flags]
        out = pd.DataFrame({"title": raw[1].astype(str), "genres": genres})
        out.index = pd.Index(raw[0].astype(np.int64), name="item")
        return out
    if path.suffix == ".dat":
        raw_bytes = path.read_bytes()
        try:  # 10M's movies.dat is UTF-8, 1M's is Latin-1
            text = raw_bytes.decode("utf-8")
        except UnicodeDecodeError:
            text = raw_bytes.decode("latin-1")
        lines = text.splitlines()
        rows = [ln.split("::") for ln in lines if ln.strip()]
        out = pd.DataFrame(
            {"title": [r[1] for r in rows], "genres": [r[2] for r in rows]},
            index=pd.Index([int(r[0]) for r in rows], dtype=np.int64, name="item"),
        )
        return out
    raw = pd.read_csv(path, header=0)
    out = pd.DataFrame({"title": raw["title"].astype(str), "genres": raw["genres"].astype(str)})
    out.index = pd.Index(raw["movieId"].astype(np.int64), name="item")
    return out


def _genres_100k(folder: Path) -> list[str]:
    path = folder / "u.genre"
    if path.is_file():
        g = pd.read_csv(path, sep="|", header=None, encoding="latin-1").dropna()
        return [str(x) for x in g.sort_values(1)[0]]
    return [f"genre{k}" for k in range(19)]
