"""The ``dmf`` argument parser: one subcommand per task, each with examples in ``--help``."""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

import dmf
from dmf.cli._commands import (
    _cmd_datasets_fetch,
    _cmd_datasets_list,
    _cmd_demo,
    _cmd_evaluate,
    _cmd_fit,
    _cmd_info,
    _cmd_recommend,
    _cmd_serve,
    _cmd_similar,
)
from dmf.server._options import add_arguments as add_serve_arguments

__all__ = ["build_parser"]


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
            "dmf serve model.zarr --state serve-state/",
            "dmf datasets fetch 100k",
        ),
    )
    parser.add_argument("--version", action="version", version=f"dmf {dmf.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    # demo
    p = _command(
        sub,
        common,
        "demo",
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
    p = _command(
        sub,
        common,
        "fit",
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
        help="any other hyper-parameter of the method, e.g. -p solver=cg (repeatable)",
    )
    p.add_argument(
        "--relevance-threshold",
        type=float,
        help="test ratings >= this are relevant for ranking metrics (default: all)",
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
    p = _command(
        sub,
        common,
        "evaluate",
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
    p = _command(
        sub,
        common,
        "recommend",
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
    p = _command(
        sub,
        common,
        "info",
        help="describe a saved model",
        description=(
            "The model card: kind, data source and shape, fit date, dmf version, "
            "hyper-parameters, fit history and the test metrics recorded by 'dmf fit'."
        ),
        epilog=_examples("dmf info model.zarr", "dmf info model.zarr --json"),
    )
    p.add_argument("model", metavar="MODEL", help="a model store written by 'dmf fit --out'")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=_cmd_info)

    # similar
    p = _command(
        sub,
        common,
        "similar",
        help="items most similar to some items (cosine of item factors)",
        description="Nearest items by the cosine of a factor model's item factors.",
        epilog=_examples("dmf similar model.zarr --items 50,172 -k 10"),
    )
    p.add_argument("model", metavar="MODEL", help="a model store written by 'dmf fit --out'")
    p.add_argument("--items", required=True, help="comma-separated item ids")
    p.add_argument("-k", type=int, default=10, help="neighbours per item (default: 10)")
    p.set_defaults(func=_cmd_similar)

    # serve
    p = _command(
        sub,
        common,
        "serve",
        help="answer recommendation requests over HTTP, folding in new events",
        description=(
            "Serve a model store over HTTP/JSON (needs the 'serve' extra): /recommend, "
            "/events (fsync'ed to a log under --state, folded in before the answer), "
            "/similar-items, /metrics, /openapi.json and a page to try it at /."
        ),
        epilog=_examples(
            "dmf serve model.zarr --state serve-state/",
            "dmf serve model.zarr --host 0.0.0.0 --token SECRET --shards 2 --snapshot-every 10000",
        ),
    )
    add_serve_arguments(p)
    p.set_defaults(func=_cmd_serve)

    # datasets
    p = _command(
        sub,
        common,
        "datasets",
        help="MovieLens data sets: fetch, list",
        description="Find or download the MovieLens releases dmf reads by name.",
        epilog=_examples("dmf datasets list", "dmf datasets fetch 100k --data-home ./data"),
    )
    dsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = _command(
        dsub,
        common,
        "fetch",
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
    q = _command(
        dsub,
        common,
        "list",
        help="releases dmf knows and which are found locally",
        epilog=_examples("dmf datasets list"),
    )
    q.add_argument("--data-home", help="folder to look in first")
    q.set_defaults(func=_cmd_datasets_list)
    return parser


def _command(sub: Any, common: argparse.ArgumentParser, name: str, **kw: Any) -> Any:
    """A subcommand parser with the shared options and the examples layout."""
    return sub.add_parser(name, parents=[common], formatter_class=_Formatter, **kw)


def _add_columns(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("columns of CSV/Parquet files")
    g.add_argument("--user-col", default="user", help="user id column (default: user)")
    g.add_argument("--item-col", default="item", help="item id column (default: item)")
    g.add_argument(
        "--rating-col",
        default="rating",
        help="rating column (default: rating); 'none' for implicit feedback",
    )
    g.add_argument("--sep", help=r"CSV separator, escapes understood: '\t' (default: ',')")
    g.add_argument(
        "--no-header", action="store_true", help="the CSV has no header row (give --names)"
    )
    g.add_argument(
        "--names",
        metavar="COLS",
        help="column names of a headerless CSV, e.g. user,item,rating,timestamp",
    )
    g.add_argument(
        "--implicit",
        action="store_true",
        help="interactions, not ratings: repeated (user, item) events are summed into counts "
        "and the model is fitted for ranking (implicit=True)",
    )
    g.add_argument(
        "--duplicates",
        choices=["raise", "last", "mean", "sum"],
        help="repeated (user, item) rows: raise (default for ratings), keep the last, "
        "average, or sum (default with --implicit)",
    )


def _add_cluster(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("where the work runs (default: threads in this process)")
    x = g.add_mutually_exclusive_group()
    x.add_argument("--workers", type=int, help="start a local Dask cluster of N processes")
    x.add_argument("--scheduler", metavar="ADDRESS", help="connect to a running Dask scheduler")
