"""The ``dmf`` command line: ``demo``, ``fit``, ``evaluate``, ``recommend``, ``info``, ``datasets``.

Bad input (a missing file, an unknown method, wrong column names, a store
that is not a model, ...) ends with exit status 2 and one line on stderr, no
traceback; ``--debug`` shows the traceback instead. Results go to stdout,
progress and notes to stderr.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import inspect
import json
import re
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

__all__ = ["CLIError", "build_parser", "main"]

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


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line (usage is in ``--help``)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions wrapped to the terminal, example blocks kept as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("examples:"):
            return super()._fill_text(text, width, indent)
        return argparse.HelpFormatter._fill_text(self, text, width, indent)


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


# ------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    """The ``dmf`` argument parser (every subcommand has ``--help`` with examples)."""
    from dmf import __version__

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the full traceback when something fails",
    )
    parser = _Parser(
        prog="dmf",
        description="Distributed matrix factorisation for recommender systems on Dask.",
        formatter_class=_Formatter,
        parents=[common],
        epilog=_examples(
            "dmf demo",
            "dmf fit 100k:u1 --method als --rank 64 --out model.zarr",
            "dmf fit ratings.csv --method sgd --holdout 0.2 --out model.zarr --workers 2",
            "dmf evaluate model.zarr test.csv --metrics rmse,mae",
            "dmf recommend model.zarr --users 1,2 -k 10",
            "dmf info model.zarr",
            "dmf datasets fetch 100k",
        ),
    )
    parser.add_argument("--version", action="version", version=f"dmf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    # demo
    p = sub.add_parser(
        "demo",
        parents=[common],
        formatter_class=_Formatter,
        help="fit and evaluate on built-in data (no network, no cluster)",
        description=(
            "Fit the best available solver and the baseline on MovieLens 100K when a local copy "
            "is found ($DMF_DATA/ml-100k), else on a built-in synthetic data set; print held-out "
            "RMSE/MAE and a top-5 for one user."
        ),
        epilog=_examples("dmf demo", "dmf demo --data synthetic --method sgd --quiet"),
    )
    p.add_argument(
        "--data",
        choices=["auto", "movielens", "synthetic"],
        default="auto",
        help="data set (default: MovieLens 100K if found locally, else synthetic)",
    )
    p.add_argument(
        "--method",
        default="best",
        help="solver to show beside the baseline (default: best available: als, sgd)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the split and the solver")
    p.add_argument("--quiet", action="store_true", help="no per-iteration progress")
    p.set_defaults(func=_cmd_demo)

    # fit
    p = sub.add_parser(
        "fit",
        parents=[common],
        formatter_class=_Formatter,
        help="fit a model on a ratings file or a MovieLens release and save it",
        description=(
            "Fit a model. DATA is a CSV file (.csv, .tsv), a Parquet file or folder, or a "
            "MovieLens name: 100k, 1m, 10m, 20m, 25m, latest-small; '100k:u1' is the official "
            "u1 split (fit on u1.base, evaluate on u1.test)."
        ),
        epilog=_examples(
            "dmf fit 100k:u1 --method als --rank 64 --reg 0.05 --out model.zarr",
            "dmf fit ratings.csv --user-col userId --item-col movieId --method sgd \\",
            "    --holdout 0.2 --iterations 30 --out model.zarr",
            "dmf fit ratings.parquet --method als -p solver=cg -p cg_steps=3 --workers 2",
            "dmf fit 1m --method als --scheduler tcp://10.0.0.5:8786 --out s3://bucket/m.zarr",
        ),
    )
    p.add_argument("data", metavar="DATA", help="CSV/Parquet path or MovieLens name")
    p.add_argument("--method", default="als", help="als, sgd or baseline (default: als)")
    p.add_argument("--rank", type=int, help="number of latent factors")
    p.add_argument("--reg", type=float, help="regularisation")
    p.add_argument(
        "--iterations", type=int, help="iterations / epochs (max_iter, n_epochs or n_iter)"
    )
    p.add_argument("--seed", type=int, help="random seed (also of --holdout)")
    p.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any other hyper-parameter, e.g. -p solver=cg (repeatable)",
    )
    p.add_argument("--out", help="save the model to this Zarr store (path or fsspec URL)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out store")
    p.add_argument("--test", metavar="TEST", help="held-out ratings to evaluate on after the fit")
    p.add_argument(
        "--holdout",
        type=float,
        metavar="FRACTION",
        help="hold out this fraction of DATA at random as the test set",
    )
    p.add_argument(
        "--validate",
        action="store_true",
        help="also pass the test set to fit as validation= (per-iteration validation RMSE)",
    )
    p.add_argument("--metrics", default="rmse,mae", help="test metrics (default: rmse,mae)")
    p.add_argument("--report", metavar="HTML", help="save a Dask performance report")
    p.add_argument("--quiet", action="store_true", help="no per-iteration progress")
    _add_columns(p)
    _add_cluster(p)
    p.set_defaults(func=_cmd_fit)

    # evaluate
    p = sub.add_parser(
        "evaluate",
        parents=[common],
        formatter_class=_Formatter,
        help="score a saved model on held-out ratings",
        description="Score a saved model on held-out ratings (aligned to the model by id).",
        epilog=_examples(
            "dmf evaluate model.zarr 100k:u1.test --metrics rmse,mae",
            "dmf evaluate model.zarr test.csv --metrics rmse,ndcg@10 --train train.csv",
        ),
    )
    p.add_argument("model", metavar="MODEL", help="a model store written by 'dmf fit --out'")
    p.add_argument("test", metavar="TEST", help="CSV/Parquet path or MovieLens name")
    p.add_argument("--metrics", default="rmse,mae", help="comma-separated (default: rmse,mae)")
    p.add_argument(
        "--train", metavar="TRAIN", help="training ratings, masked out for ranking metrics"
    )
    p.add_argument("--relevance-threshold", type=float, help="ratings >= this are relevant")
    p.add_argument(
        "--cold-start",
        choices=["baseline", "nan", "raise"],
        default="baseline",
        help="ids unseen in training (default: baseline fallback)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    _add_columns(p)
    _add_cluster(p)
    p.set_defaults(func=_cmd_evaluate)

    # recommend
    p = sub.add_parser(
        "recommend",
        parents=[common],
        formatter_class=_Formatter,
        help="top-k items for some users or for all users",
        description="Top-k recommendations from a saved model, by original ids.",
        epilog=_examples(
            "dmf recommend model.zarr --users 1,2 -k 10",
            "dmf recommend model.zarr --users 1 -k 5 --exclude 100k:u1.base",
            "dmf recommend model.zarr --all -k 10 --out recs.parquet",
        ),
    )
    p.add_argument("model", metavar="MODEL", help="a model store written by 'dmf fit --out'")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--users", help="comma-separated user ids")
    who.add_argument("--all", action="store_true", help="every user the model knows")
    p.add_argument("-k", type=int, default=10, help="items per user (default: 10)")
    p.add_argument("--exclude", metavar="TRAIN", help="ratings whose items are not recommended")
    p.add_argument("--out", help="write to .parquet or .csv instead of printing")
    _add_columns(p)
    _add_cluster(p)
    p.set_defaults(func=_cmd_recommend)

    # info
    p = sub.add_parser(
        "info",
        parents=[common],
        formatter_class=_Formatter,
        help="describe a saved model",
        description="Kind, hyper-parameters, training data shape and fit history of a model.",
        epilog=_examples("dmf info model.zarr", "dmf info model.zarr --json"),
    )
    p.add_argument("model", metavar="MODEL", help="a model store written by 'dmf fit --out'")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=_cmd_info)

    # datasets
    p = sub.add_parser(
        "datasets",
        parents=[common],
        formatter_class=_Formatter,
        help="MovieLens data sets: fetch, list",
        description="Find or download the MovieLens releases dmf reads by name.",
        epilog=_examples("dmf datasets list", "dmf datasets fetch 100k --data-home ./data"),
    )
    dsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = dsub.add_parser(
        "fetch",
        parents=[common],
        formatter_class=_Formatter,
        help="find a local copy or download and verify the official archive",
        description=(
            "Print the folder of a MovieLens release: a local copy (--data-home, $DMF_DATA, "
            "the cache) or the official archive downloaded into the cache and checksummed."
        ),
        epilog=_examples("dmf datasets fetch 100k", "dmf datasets fetch ml-1m --no-download"),
    )
    q.add_argument("name", metavar="NAME", help="100k, 1m, 10m, 20m, 25m or latest-small")
    q.add_argument("--data-home", help="folder to look in first")
    q.add_argument(
        "--no-download", action="store_true", help="fail instead of downloading when not found"
    )
    q.set_defaults(func=_cmd_datasets_fetch)
    q = dsub.add_parser(
        "list",
        parents=[common],
        formatter_class=_Formatter,
        help="releases dmf knows and which are found locally",
        epilog=_examples("dmf datasets list"),
    )
    q.add_argument("--data-home", help="folder to look in first")
    q.set_defaults(func=_cmd_datasets_list)
    return parser


def _add_columns(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("columns of CSV/Parquet files")
    g.add_argument("--user-col", default="user", help="user id column (default: user)")
    g.add_argument("--item-col", default="item", help="item id column (default: item)")
    g.add_argument(
        "--rating-col",
        default="rating",
        help="rating column (default: rating); 'none' for implicit feedback",
    )
    g.add_argument("--sep", help="CSV separator (default: ',' or tab for .tsv)")


def _add_cluster(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("where the work runs (default: threads in this process)")
    x = g.add_mutually_exclusive_group()
    x.add_argument("--workers", type=int, help="start a local Dask cluster of N processes")
    x.add_argument("--scheduler", metavar="ADDRESS", help="connect to a running Dask scheduler")


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
    names = set(cls._param_names()) | (
        set(inspect.signature(cls.fit).parameters) - {"self", "ratings"}
    )
    out: dict[str, Any] = {}
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
        out[name.strip()] = _parse_value(value)
    return out


def _columns(args: argparse.Namespace) -> dict[str, Any]:
    rating = None if str(args.rating_col).lower() == "none" else args.rating_col
    return {"user": args.user_col, "item": args.item_col, "rating": rating}


def _load(spec: str, args: argparse.Namespace, what: str) -> Any:
    """Ratings from a path or MovieLens name; ``100k:u1`` gives ``(train, test)``."""
    import dmf

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
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq") or (path.is_dir() and "://" not in spec):
        return dmf.read_parquet(spec, **cols)
    sep = args.sep if args.sep is not None else ("\t" if suffix in (".tsv", ".tab") else ",")
    return dmf.read_csv(spec, sep=sep, **cols)


def _only(data: Any) -> Any:
    """The training part when ``_load`` returned a ``(train, test)`` split."""
    return data[0] if isinstance(data, tuple) else data


def _method(name: str) -> type:
    import dmf

    if name not in dmf.METHODS:
        raise CLIError(f"--method {name!r} is unknown; available: {', '.join(sorted(dmf.METHODS))}")
    return dmf.METHODS[name]


def _load_model(path: str) -> Any:
    import dmf

    load = getattr(dmf, "load", None)
    if load is None:  # pragma: no cover - persistence ships with dmf
        raise CLIError("this dmf has no model persistence (dmf.load)")
    if "://" not in path and not Path(path).exists():
        raise CLIError(f"MODEL {path!r} not found: give a store written by 'dmf fit --out'")
    return load(path)


def _user_ids(text: str, model: Any) -> list[Any]:
    """Ids from ``"1,2"`` typed like the model's user ids."""
    parts = [t.strip() for t in text.split(",") if t.strip()]
    if not parts:
        raise CLIError(f"--users {text!r}: give comma-separated user ids, e.g. --users 1,2")
    kind = getattr(getattr(model.users_, "dtype", None), "kind", "O")
    if kind in "iu":
        try:
            return [int(t) for t in parts]
        except ValueError as e:
            raise CLIError(f"--users {text!r}: this model's user ids are integers") from e
    if kind == "f":
        return [float(t) for t in parts]
    return parts


def _metrics(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise CLIError(f"--metrics {text!r}: name at least one metric, e.g. rmse")
    return names


def _evaluate(model: Any, test: Any, metrics: list[str], **kw: Any) -> dict[str, Any]:
    import dmf

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
    return f"{r.nnz:,} ratings, {r.n_users:,} users x {r.n_items:,} items"


# ---------------------------------------------------------------- commands
def _best_method() -> str:
    import dmf

    return next(m for m in _PREFERRED if m in dmf.METHODS)


def _demo_data(choice: str, seed: int) -> tuple[Any, Any, Any, str]:
    """``(train, test, titles or None, description)`` for ``dmf demo``."""
    import dmf

    if choice in ("auto", "movielens"):
        try:
            train, test = dmf.datasets.movielens("100k", split="u1", download=False)
            titles = dmf.datasets.movielens_items("100k", download=False)["title"]
            return train, test, titles, "MovieLens 100K, official u1 split"
        except dmf.DMFError:
            if choice == "movielens":
                raise
    r = dmf.datasets.synthetic(n_users=1_000, n_items=1_700, nnz=100_000, rank=10, seed=seed)
    train, test = dmf.split.random(r, test_size=0.2, seed=seed)
    return train, test, None, "synthetic (1,000 users, 1,700 items, power-law), 80/20 split"


def _cmd_demo(args: argparse.Namespace) -> int:
    import dmf

    method = _best_method() if args.method == "best" else args.method
    _method(method)
    train, test, titles, what = _demo_data(args.data, args.seed)
    print(f"data: {what}: train {_describe(train)}; test {test.nnz:,} ratings")
    verbose = not args.quiet
    rows, fitted = [], {}
    for name in dict.fromkeys([method, "baseline"]):
        cls = dmf.METHODS[name]
        params: dict[str, Any] = {"verbose": verbose}
        if "seed" in cls._param_names():
            params["seed"] = args.seed
        t0 = time.perf_counter()
        model = dmf.fit(train, method=name, **params)
        seconds = time.perf_counter() - t0
        scores = dmf.evaluate(model, test, metrics=["rmse", "mae"])
        fitted[name] = model
        rows.append({"method": name, "test RMSE": scores["rmse"], "test MAE": scores["mae"],
                     "fit s": f"{seconds:.2f}"})  # fmt: skip
    print()
    print(_table(rows, ["method", "test RMSE", "test MAE", "fit s"]))
    best = fitted[min(rows, key=lambda r: r["test RMSE"])["method"]]
    user = train.users[int(train.user_counts.argmax())]
    recs = _top_k(best, user, 5, train)
    print()
    print(f"top 5 for user {user} by {best.kind} (items the user rated in training excluded):")
    if titles is not None:
        recs["title"] = [titles.get(i, "") for i in recs["item"]]
    print(_table(recs.to_dict("records"), list(recs.columns)))
    return 0


def _top_k(model: Any, user: Any, k: int, train: Any) -> Any:
    """Top-k for one user: ``model.recommend`` when available, else scores by hand."""
    import numpy as np
    import pandas as pd

    if hasattr(model, "recommend"):
        recs = model.recommend(users=[user], k=k, exclude=train)
        return recs[[c for c in ("rank", "item", "score") if c in recs.columns]].reset_index(
            drop=True
        )
    u = model._user_codes([user])
    scores = model._score_users(u)[0].astype(np.float64)
    scores[model.item_counts_ == 0] = -np.inf
    seen = train.to_pandas()
    seen_items = seen.loc[seen["user"] == user, "item"]
    scores[model._item_codes(seen_items)] = -np.inf
    top = np.argsort(-scores, kind="stable")[:k]
    return pd.DataFrame(
        {"rank": np.arange(1, len(top) + 1), "item": model.items_[top], "score": scores[top]}
    )


def _cmd_fit(args: argparse.Namespace) -> int:
    import dmf

    cls = _method(args.method)
    params = _params(args, cls)
    if args.test is not None and args.holdout is not None:
        raise CLIError("--test and --holdout exclude each other: give one")
    data = _load(args.data, args, "DATA")
    train, test = data if isinstance(data, tuple) else (data, None)
    if args.holdout is not None:
        seed = args.seed if args.seed is not None else 0
        train, test = dmf.split.random(train, test_size=args.holdout, seed=seed)
    if args.test is not None:
        test = _only(_load(args.test, args, "TEST"))
    metrics = _metrics(args.metrics)
    if args.validate:
        if test is None:
            raise CLIError("--validate needs a test set: --test TEST, --holdout or a 100k:u1 split")
        params["validation"] = test
    params.setdefault("verbose", not args.quiet)
    if "verbose" not in cls._param_names():
        params.pop("verbose")
    if args.out is not None and not args.overwrite and "://" not in args.out:
        if Path(args.out).exists():
            raise CLIError(f"--out {args.out!r} exists: add --overwrite to replace it")
    with _cluster(args):
        t0 = time.perf_counter()
        model = dmf.fit(train, method=args.method, report=args.report, **params)
        seconds = time.perf_counter() - t0
        _note(f"fitted {args.method} on {_describe(train)} in {seconds:.2f} s")
        if test is not None:
            scores = _evaluate(model, test, metrics)
            print(
                _table([{"metric": k, "value": v} for k, v in scores.items()], ["metric", "value"])
            )
        if args.out is not None:
            where = model.save(args.out, overwrite=args.overwrite)
            _note(f"model saved to {where}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    model = _load_model(args.model)
    test = _only(_load(args.test, args, "TEST"))
    train = _only(_load(args.train, args, "TRAIN")) if args.train else None
    with _cluster(args):
        scores = _evaluate(
            model,
            test,
            _metrics(args.metrics),
            train=train,
            relevance_threshold=args.relevance_threshold,
            cold_start=args.cold_start if args.cold_start != "baseline" else None,
        )
    if args.json:
        print(json.dumps(scores))
    else:
        print(_scores_table(scores))
    return 0


def _cmd_recommend(args: argparse.Namespace) -> int:
    model = _load_model(args.model)
    if args.k < 1:
        raise CLIError(f"-k {args.k}: need at least 1")
    exclude = _only(_load(args.exclude, args, "--exclude")) if args.exclude else None
    if args.out is not None and not args.out.endswith((".parquet", ".csv")):
        raise CLIError(f"--out {args.out!r}: name a .parquet or .csv file")
    with _cluster(args):
        if args.all:
            if not hasattr(model, "recommend_all"):  # pragma: no cover - evaluation ships it
                raise CLIError("this dmf has no recommend_all")
            recs = model.recommend_all(k=args.k, exclude=exclude)
            if args.out is None:
                recs = recs.compute()
            elif args.out.endswith(".parquet"):
                recs.to_parquet(args.out, write_index=False)
                _note(f"recommendations written to {args.out}")
                return 0
            else:
                recs = recs.compute()
        else:
            users = _user_ids(args.users, model)
            if not hasattr(model, "recommend"):  # pragma: no cover - evaluation ships it
                raise CLIError("this dmf has no recommend")
            recs = model.recommend(users=users, k=args.k, exclude=exclude)
    if args.out is None:
        print(recs.to_string(index=False))
    elif args.out.endswith(".csv"):
        recs.to_csv(args.out, index=False)
        _note(f"recommendations written to {args.out}")
    else:
        recs.to_parquet(args.out, index=False)
        _note(f"recommendations written to {args.out}")
    return 0


def _model_info(model: Any, path: str) -> dict[str, Any]:
    info: dict[str, Any] = {"store": path, "kind": model.kind, "class": type(model).__name__}
    info["params"] = {k: v for k, v in model.get_params().items() if k != "verbose"}
    info["users"] = len(model.users_)
    info["items"] = len(model.items_)
    factors = getattr(model, "user_factors_", None)
    info["rank"] = None if factors is None else int(factors.shape[1])
    info["global_mean"] = float(model.global_mean_)
    info["rating_scale"] = list(model.rating_scale_)
    info["training"] = dict(getattr(model, "train_info_", {}))
    history = getattr(model, "history_", [])
    info["iterations"] = len(history)
    if history:
        info["last_iteration"] = history[-1]
    return info


def _cmd_info(args: argparse.Namespace) -> int:
    model = _load_model(args.model)
    info = _model_info(model, args.model)
    if args.json:
        print(json.dumps(info, default=_json_default))
        return 0
    width = max(len(k) for k in info)
    for k, v in info.items():
        if isinstance(v, dict):
            v = ", ".join(f"{a}={_short(b)}" for a, b in v.items())
        print(f"{k.ljust(width)}  {_short(v)}")
    return 0


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


def _cmd_datasets_fetch(args: argparse.Namespace) -> int:
    import dmf

    name = _ml_name(args.name)
    folder = dmf.datasets.movielens_path(name, args.data_home, download=not args.no_download)
    print(folder)
    return 0


def _cmd_datasets_list(args: argparse.Namespace) -> int:
    import dmf
    from dmf.datasets._movielens import VERSIONS

    rows = []
    for name in VERSIONS:
        try:
            where = str(dmf.datasets.movielens_path(name, args.data_home, download=False))
        except dmf.DMFError:
            where = "(not found locally; 'dmf datasets fetch' downloads it)"
        rows.append({"name": name, "local copy": where})
    print(_table(rows, ["name", "local copy"]))
    return 0


# -------------------------------------------------------------------- main
def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text or type(e).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``dmf`` command line; returns the exit status.

    Examples
    --------
    >>> from dmf.cli._main import main
    >>> main(["datasets", "fetch", "nope"])  # doctest: +SKIP
    2
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error already printed
        return int(e.code or 0) if isinstance(e.code, int) or e.code is None else 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("dmf: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        import dmf

        if debug:
            traceback.print_exc()
        bad_input = isinstance(e, (CLIError, dmf.DMFError, OSError))
        if bad_input:
            print(f"dmf {args.command}: error: {_one_line(e)}", file=sys.stderr)
            return 2
        print(
            f"dmf {args.command}: internal error: {type(e).__name__}: {_one_line(e)}"
            + ("" if debug else " (rerun with --debug for the traceback)"),
            file=sys.stderr,
        )
        return 1
    finally:
        sys.stdout.flush()
