"""What the commands share: errors, argument parsing into dmf calls, loading, tables."""

from __future__ import annotations

import argparse
import ast
import codecs
import contextlib
import inspect
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import dmf

__all__ = ["CLIError"]

#: MovieLens releases by CLI name (``100k``, ``ml-100k``, ``100k:u1``, ``100k:u1.test``).
_ML_NAME = re.compile(
    r"^(?:ml-)?(?P<name>100k|1m|10m|20m|25m|latest-small)"
    r"(?::(?P<split>u[1-5]|ua|ub)(?:\.(?P<part>base|test))?)?$",
    re.IGNORECASE,
)
#: Solvers in the order ``dmf demo`` prefers them.
_PREFERRED = ("als", "sgd", "baseline")
#: Hyper-parameter names that ``--iterations`` may mean, by estimator.
_ITER_NAMES = ("max_iter", "n_epochs", "n_iter")


class CLIError(Exception):
    """Bad command-line input: reported as one line, exit status 2."""


# ----------------------------------------------------------------- helpers
def _parse_value(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _params(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """Hyper-parameters from ``--rank/--reg/--iterations/--seed/-p`` for estimator ``cls``."""
    names = set(cls._param_names()) - {"verbose"}
    out: dict[str, Any] = {}
    if getattr(args, "implicit", False):
        if "implicit" not in names:
            raise CLIError(
                f"--implicit: method {args.method!r} fits ratings only; use --method als"
            )
        out["implicit"] = True
    if args.rank is not None:
        out["rank"] = args.rank
    if args.reg is not None:
        out["reg"] = args.reg
    if args.iterations is not None:
        name = next((n for n in _ITER_NAMES if n in names), None)
        if name is None:
            raise CLIError(f"--iterations: method {args.method!r} has no iteration count")
        out[name] = args.iterations
    if args.seed is not None and "seed" in names:
        out["seed"] = args.seed
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise CLIError(f"-p {item!r}: expected NAME=VALUE, e.g. -p solver=cg")
        if name.strip() not in names:
            raise CLIError(
                f"-p {name.strip()}: not a hyper-parameter of {args.method!r}; "
                f"it has {', '.join(sorted(names))}"
            )
        out[name.strip()] = _parse_value(value)
    return out


def _columns(args: argparse.Namespace) -> dict[str, Any]:
    rating = None if str(args.rating_col).lower() == "none" else args.rating_col
    return {"user": args.user_col, "item": args.item_col, "rating": rating}


def _load(spec: str, args: argparse.Namespace, what: str) -> Any:
    """Ratings from a path or MovieLens name; ``100k:u1`` gives ``(train, test)``."""
    m = _ML_NAME.match(spec.strip())
    if m and not Path(spec).exists():
        name = m["name"].lower()
        split, part = m["split"], m["part"]
        if split is None:
            return dmf.datasets.movielens(name)
        train, test = dmf.datasets.movielens(name, split=split.lower())
        if part is None:
            return train, test
        return train if part.lower() == "base" else test
    path = Path(spec)
    if "://" not in spec and not path.exists():
        raise CLIError(
            f"{what} {spec!r} not found: give a CSV or Parquet path, or a MovieLens name "
            "(100k, 1m, 10m, 20m, 25m, latest-small; 100k:u1 for the official split)"
        )
    cols = _columns(args)
    policy = {"duplicates": _duplicates(args)}
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq") or (path.is_dir() and "://" not in spec):
            return dmf.read_parquet(spec, **cols, **policy)
        name = path.name.lower()
        known = _MOVIELENS_FILES.get("u.data" if _ML100K_FILE.match(name) else name)
        if known is not None and _default_columns(args):
            return dmf.read_csv(spec, **known, **policy)
        sep = _unescape(args.sep) if args.sep is not None else None
        if sep is None:
            sep = "\t" if suffix in (".tsv", ".tab") else ","
        kw: dict[str, Any] = {"sep": sep}
        if args.names:
            kw["names"] = [n.strip() for n in args.names.split(",") if n.strip()]
            kw["header"] = None if args.no_header else 0
        elif args.no_header:
            raise CLIError("--no-header needs --names, e.g. --names user,item,rating,timestamp")
        return dmf.read_csv(spec, **kw, **cols, **policy)
    except dmf.RatingsError as e:
        raise CLIError(_in_cli_terms(str(e))) from e


#: MovieLens 100K's tab-separated files: u.data and the u1..u5, ua, ub splits.
_ML100K_FILE = re.compile(r"^u(?:[1-5ab])?\.(?:data|base|test)$")
#: MovieLens rating files read by name: (options of dmf.read_csv).
_MOVIELENS_FILES: dict[str, dict[str, Any]] = {
    "u.data": {
        "sep": "\t",
        "header": None,
        "names": ["user", "item", "rating", "timestamp"],
        "timestamp": "timestamp",
    },
    "ratings.dat": {
        "sep": "::",
        "engine": "python",
        "header": None,
        "names": ["user", "item", "rating", "timestamp"],
        "timestamp": "timestamp",
    },
    "ratings.csv": {
        "user": "userId",
        "item": "movieId",
        "rating": "rating",
        "timestamp": "timestamp",
    },
}


def _default_columns(args: argparse.Namespace) -> bool:
    """No column option given: a known MovieLens file may use its own layout."""
    return (args.user_col, args.item_col, args.rating_col, args.names) == (
        "user", "item", "rating", None,
    )  # fmt: skip


def _unescape(sep: str) -> str:
    """``--sep '\\t'`` as typed in a shell means a tab."""
    return codecs.decode(sep, "unicode_escape") if "\\" in sep else sep


def _duplicates(args: argparse.Namespace) -> str:
    if getattr(args, "duplicates", None):
        return args.duplicates
    return "sum" if getattr(args, "implicit", False) else "raise"


def _in_cli_terms(message: str) -> str:
    """A data error's hint in the options a command-line user types."""
    return message.replace(
        "Name them with user=, item=, rating= (rating=None for implicit feedback).",
        "Name them with --user-col, --item-col, --rating-col (--rating-col none for "
        "interactions), or --no-header --names for a file without a header row.",
    ).replace(
        "Pass duplicates='last', 'mean' or 'sum' to merge them.",
        "Pass --duplicates last, mean or sum to merge them (--implicit sums events into counts).",
    )


def _only(data: Any) -> Any:
    """The training part when ``_load`` returned a ``(train, test)`` split."""
    return data[0] if isinstance(data, tuple) else data


def _method(name: str) -> type:
    if name not in dmf.METHODS:
        raise CLIError(f"--method {name!r} is unknown; available: {', '.join(sorted(dmf.METHODS))}")
    return dmf.METHODS[name]


def _load_model(path: str) -> Any:
    load = getattr(dmf, "load", None)
    if load is None:  # pragma: no cover - persistence ships with dmf
        raise CLIError("this dmf has no model persistence (dmf.load)")
    if "://" not in path and not Path(path).exists():
        raise CLIError(f"MODEL {path!r} not found: give a store written by 'dmf fit --out'")
    return load(path)


#: MovieLens item files, looked for beside a MovieLens ratings file.
_ITEM_FILES = ("u.item", "movies.dat", "movies.csv")


def _titles_for(spec: str) -> tuple[Any, str] | None:
    """``(item id -> title Series, where from)`` for MovieLens data, else None."""
    m = _ML_NAME.match(spec.strip())
    if m and not Path(spec).exists():
        try:
            items = dmf.datasets.movielens_items(m["name"].lower(), download=False)
        except (dmf.DMFError, OSError, ValueError):
            return None
        return items["title"], f"MovieLens {m['name']}"
    path = Path(spec)
    name = path.name.lower()
    if not (_ML100K_FILE.match(name) or name in _MOVIELENS_FILES) or "://" in spec:
        return None
    for item_file in _ITEM_FILES:
        beside = path.parent / item_file
        if beside.is_file():
            try:
                return dmf.datasets.read_movielens_items(beside)["title"], str(beside)
            except (OSError, ValueError, IndexError, KeyError, UnicodeDecodeError):
                return None
    return None


def _with_titles(frame: Any, model: Any, path: str, column: str) -> Any:
    """``frame`` with a ``title`` column for ``column``'s items when the store keeps titles."""
    from dmf.store import read_titles  # the store stack is imported where it is used

    titles = read_titles(path)
    if titles is None or not isinstance(frame, pd.DataFrame) or not len(frame):
        return frame
    codes = model.items_.get_indexer(pd.Index(frame[column].to_numpy()))
    frame = frame.copy()
    frame["title"] = np.where(codes >= 0, titles[np.maximum(codes, 0)], "")
    return frame


def _user_ids(text: str, model: Any) -> list[Any]:
    """Ids from ``"1,2"`` typed like the model's user ids."""
    return _ids_like(text, model.users_, "--users")


def _ids_like(text: str, index: Any, option: str) -> list[Any]:
    """Ids from ``"1,2"`` typed like the ids of ``index``."""
    parts = [t.strip() for t in text.split(",") if t.strip()]
    if not parts:
        raise CLIError(f"{option} {text!r}: give comma-separated ids, e.g. {option} 1,2")
    kind = getattr(getattr(index, "dtype", None), "kind", "O")
    if kind in "iu":
        try:
            return [int(t) for t in parts]
        except ValueError as e:
            raise CLIError(f"{option} {text!r}: this model's ids are integers") from e
    if kind == "f":
        return [float(t) for t in parts]
    return parts


def _metrics(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise CLIError(f"--metrics {text!r}: name at least one metric, e.g. rmse")
    return names


def _evaluate(model: Any, test: Any, metrics: list[str], **kw: Any) -> dict[str, Any]:
    accepted = set(inspect.signature(dmf.evaluate).parameters)
    for name, value in kw.items():
        if value is not None and name not in accepted:
            raise CLIError(f"this dmf's evaluate takes no {name}=")
    return dmf.evaluate(
        model, test, metrics=metrics, **{k: v for k, v in kw.items() if v is not None}
    )


@contextlib.contextmanager
def _cluster(args: argparse.Namespace) -> Iterator[Any]:
    """A Dask client for ``--workers N`` / ``--scheduler ADDRESS``, current inside the block."""
    workers = getattr(args, "workers", None)
    address = getattr(args, "scheduler", None)
    if workers is None and address is None:
        yield None
        return
    from distributed import Client, LocalCluster

    if workers is not None:
        if workers < 1:
            raise CLIError(f"--workers {workers}: need at least 1")
        with (
            LocalCluster(
                n_workers=workers, threads_per_worker=1, dashboard_address=":0", processes=True
            ) as cluster,
            Client(cluster, set_as_default=False) as client,
            client.as_current(),
        ):
            _note(f"local Dask cluster of {workers} workers, dashboard: {client.dashboard_link}")
            yield client
        return
    try:
        client = Client(address, timeout="10s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as e:
        raise CLIError(f"--scheduler {address!r}: cannot connect ({e})") from e
    with client, client.as_current():
        _note(f"connected to {address}, dashboard: {client.dashboard_link}")
        yield client


def _note(text: str) -> None:
    print(f"dmf: {text}", file=sys.stderr, flush=True)


def _table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    """A plain aligned text table: numbers right-aligned (floats with 4 decimals), text left."""

    def cell(v: Any) -> tuple[str, bool]:
        if isinstance(v, bool):
            return str(v), False
        if isinstance(v, float) or (hasattr(v, "dtype") and getattr(v.dtype, "kind", "") == "f"):
            return f"{float(v):.4f}", True
        if isinstance(v, int) or (hasattr(v, "dtype") and getattr(v.dtype, "kind", "") in "iu"):
            return str(v), True
        text = str(v)
        return text, bool(re.fullmatch(r"-?[0-9.]+", text))

    cells = [[cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[j][0]) for row in cells)) for j, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    for row in cells:
        lines.append(
            "  ".join(
                text.rjust(w) if num else text.ljust(w)
                for (text, num), w in zip(row, widths, strict=True)
            ).rstrip()
        )
    return "\n".join(lines)


def _scores_table(scores: dict[str, Any]) -> str:
    return _table([{"metric": k, "value": v} for k, v in scores.items()], ["metric", "value"])


def _describe(r: Any) -> str:
    what = "interactions" if r.implicit else "ratings"
    text = f"{r.nnz:,} {what}, {r.n_users:,} users x {r.n_items:,} items"
    merged = r.report.get("duplicates_merged", 0)
    if merged:
        how = "summed into counts" if r.report.get("duplicates_policy") == "sum" else "merged"
        text += f" ({merged:,} repeated events {how})"
    return text


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.5g}"
    return str(v)


def _json_default(v: Any) -> Any:
    if hasattr(v, "item"):
        return v.item()
    if hasattr(v, "tolist"):
        return v.tolist()
    return str(v)


def _ml_name(text: str) -> str:
    m = _ML_NAME.match(text.strip())
    if not m or m["split"]:
        raise CLIError(
            f"NAME {text!r} is not a MovieLens release: 100k, 1m, 10m, 20m, 25m or latest-small"
        )
    return m["name"].lower()
