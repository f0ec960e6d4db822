"""The subcommands: ``demo``, ``fit``, ``evaluate``, ``recommend``, ``info``, ``datasets``."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import dmf
from dmf.cli._common import (
    _PREFERRED,
    CLIError,
    _cluster,
    _describe,
    _evaluate,
    _ids_like,
    _json_default,
    _load,
    _load_model,
    _method,
    _metrics,
    _ml_name,
    _note,
    _only,
    _params,
    _scores_table,
    _short,
    _table,
    _titles_for,
    _user_ids,
    _with_titles,
)
from dmf.datasets._movielens import VERSIONS


# ---------------------------------------------------------------- commands
def _best_method() -> str:
    return next(m for m in _PREFERRED if m in dmf.METHODS)


def _demo_data(choice: str, seed: int) -> tuple[Any, Any, Any, str]:
    """``(train, test, titles or None, description)`` for ``dmf demo``."""
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
    # The top-5 comes from a model trained for ranking on all user-item pairs: a rating
    # model ranks by predicted rating and puts items rated once or twice first.
    t0 = time.perf_counter()
    ranker = dmf.fit(train, method="als", implicit=True, verbose=verbose)
    seconds = time.perf_counter() - t0
    at10 = ["precision@10", "ndcg@10"]
    rank_scores = dmf.evaluate(ranker, test, at10, train=train, relevance_threshold=4.0)
    pop = dmf.evaluate(dmf.fit(train, method="popular"), test, at10, train=train,
                       relevance_threshold=4.0)  # fmt: skip
    print()
    print("ranking (relevant = test rating >= 4, training items left out):")
    rows = [
        {"model": "als implicit=True", **rank_scores, "fit s": f"{seconds:.2f}"},
        {"model": "popular", **pop, "fit s": ""},
    ]
    print(_table(rows, ["model", *at10, "fit s"]))
    user = train.users[int(train.user_counts.argmax())]
    recs = _top_k(ranker, user, 5, train)
    counts = dict(zip(train.items, train.item_counts, strict=True))
    recs["train ratings"] = [int(counts.get(i, 0)) for i in recs["item"]]
    print()
    print(f"top 5 for user {user} by implicit ALS (items the user rated in training excluded):")
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
            # ranking metrics leave out what the user had in training, as evaluate does
            scores = _evaluate(
                model, test, metrics, train=train, relevance_threshold=args.relevance_threshold
            )
            print(
                _table([{"metric": k, "value": v} for k, v in scores.items()], ["metric", "value"])
            )
            # kept in the store for the model card (dmf info)
            model.test_metrics_ = {k: _scalar(v) for k, v in scores.items()}
        if args.out is not None:
            found = _titles_for(args.data)
            where = model.save(
                args.out, overwrite=args.overwrite, titles=None if found is None else found[0]
            )
            kept = "training interactions" + ("" if found is None else f", titles ({found[1]})")
            _note(f"model saved to {where} with its {kept}")
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
    recs = _with_titles(recs, model, args.model, "item")
    if args.out is None:
        print(recs.to_string(index=False))
    elif args.out.endswith(".csv"):
        recs.to_csv(args.out, index=False)
        _note(f"recommendations written to {args.out}")
    else:
        recs.to_parquet(args.out, index=False)
        _note(f"recommendations written to {args.out}")
    return 0


def _cmd_similar(args: argparse.Namespace) -> int:
    model = _load_model(args.model)
    if args.k < 1:
        raise CLIError(f"-k {args.k}: need at least 1")
    if getattr(model, "item_factors_", None) is None:
        raise CLIError(f"MODEL {args.model!r} is a {model.kind} model: it has no item factors")
    items = _ids_like(args.items, model.items_, "--items")
    similar = _with_titles(model.similar_items(items, k=args.k), model, args.model, "similar_item")
    print(similar.to_string(index=False))
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from dmf.server._run import main as serve

    serve(args)
    return 0


def _scalar(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def _model_info(model: Any, path: str) -> dict[str, Any]:
    """The model card: what the model is, what it was fitted on, when, and how it scored."""
    info: dict[str, Any] = {"store": path, "kind": model.kind, "class": type(model).__name__}
    info["data"] = getattr(model, "data_source_", None) or "unknown"
    info["fitted_at"] = getattr(model, "fitted_at_", None) or "unknown"
    info["dmf_version"] = getattr(model, "dmf_version_", None) or "unknown"
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
    metrics = getattr(model, "test_metrics_", None)
    info["test_metrics"] = metrics if metrics else "none recorded (dmf fit --test or --holdout)"
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


def _cmd_datasets_fetch(args: argparse.Namespace) -> int:
    name = _ml_name(args.name)
    folder = dmf.datasets.movielens_path(name, args.data_home, download=not args.no_download)
    print(folder)
    return 0


def _cmd_datasets_list(args: argparse.Namespace) -> int:
    rows = []
    for name in VERSIONS:
        try:
            where = str(dmf.datasets.movielens_path(name, args.data_home, download=False))
        except dmf.DMFError:
            where = "(not found locally; 'dmf datasets fetch' downloads it)"
        rows.append({"name": name, "local copy": where})
    print(_table(rows, ["name", "local copy"]))
    return 0
