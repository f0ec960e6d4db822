"""How ALS's defaults were chosen: the explicit grid on u1, the implicit defaults on
folds they were not tuned on, against EASE and popularity.

Run: ``DMF_DATA=... python tools/bench/als_defaults.py`` (writes
``docs/_data/als_defaults.json``; ``tools/render_docs.py`` renders the tables in
``docs/als.md``).

- Explicit ALS: test RMSE on MovieLens 100K u1 over rank, ``reg`` and ``reg_bias``
  (15 iterations).
- Implicit ALS with its defaults, EASE at its best lambda and the most popular items:
  precision@10 on the ML-100K folds u2-u5 (relevant: rating >= 4, training items
  masked) and on a validation split of Last.fm's training part (a seeded per-user 20 %
  holdout, seed 1, of the seed-0 training split that ``ranking_peers.py`` reports on).
  Same metric function as ``ranking_peers.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import _report
import ranking_peers as rp

import dmf

EXPLICIT = [  # (rank, reg, reg_bias)
    (64, 0.10, 0.10), (64, 0.12, 0.12), (64, 0.15, 0.15), (64, 0.20, 0.20),
    (64, 0.12, 0.00), (64, 0.12, 0.01), (64, 0.12, 0.03), (64, 0.12, 0.05),
    (32, 0.12, 0.03), (128, 0.12, 0.03),
]  # fmt: skip
DEFAULT = (64, 0.12, 0.03)
EASE_LAMBDAS = {"ml100k": (100, 200, 400, 800), "lastfm": (10, 25, 50, 100)}


def explicit_grid(home: Path) -> list[dict]:
    train, test = dmf.datasets.movielens("100k", split="u1", data_home=home)
    rows = []
    for rank, reg, reg_bias in EXPLICIT:
        model = dmf.ALS(rank=rank, reg=reg, reg_bias=reg_bias, max_iter=15).fit(train)
        rmse = float(dmf.evaluate(model, test, ["rmse"])["rmse"])
        rows.append({"rank": rank, "reg": reg, "reg_bias": reg_bias, "iters": 15, "rmse": rmse})
        print(rows[-1], flush=True)
    return rows


def ml_fold(home: Path, fold: str) -> rp.Split:
    cols = ["user", "item", "rating", "timestamp"]
    read = {
        p: rp.pd.read_csv(home / "ml-100k" / f"{fold}.{p}", sep="\t", names=cols)
        for p in ("base", "test")
    }
    return rp.make_split(fold, fold, read["base"].assign(value=1.0), read["test"], 4.0)


def lastfm_validation(home: Path) -> rp.Split:
    outer = rp.load_lastfm(home, "log1p", seed=0)
    train, valid = rp.holdout_per_user(outer.train, 0.2, seed=1)
    return rp.make_split("lastfm", "Last.fm validation", train, valid, None)


def implicit_rows(home: Path) -> list[dict]:
    rows = []
    splits = [("ML-100K " + f, "ml100k", ml_fold(home, f)) for f in ("u2", "u3", "u4", "u5")]
    splits.append(("Last.fm validation", "lastfm", lastfm_validation(home)))
    for label, kind, split in splits:
        train = rp.dmf_ratings(split, "interactions" if kind == "ml100k" else "confidence")
        model = dmf.ALS(implicit=True).fit(train)
        ials = rp.topn_metrics(rp.dmf_scorer(model, split), split)["precision@10"]
        pop = rp.topn_metrics(rp.popular_scorer(split)[0], split)["precision@10"]
        ease = {
            lam: rp.topn_metrics(rp.ease_scorer(split, lam)[0], split)["precision@10"]
            for lam in EASE_LAMBDAS[kind]
        }
        best = max(ease, key=ease.get)
        rows.append(
            {"data": label, "ials": ials, "ease": ease[best], "ease_lambda": best, "popular": pop}
        )
        print(rows[-1], flush=True)
    return rows


def figures(data: dict) -> dict[str, str]:
    """What the pages show of ``docs/_data/als_defaults.json``."""
    best = min(data["explicit"], key=lambda r: r["rmse"])
    lines = ["| rank | `reg` | `reg_bias` | iterations | test RMSE |", "|---:|---:|---:|---:|---:|"]
    for r in data["explicit"]:
        default = (r["rank"], r["reg"], r["reg_bias"]) == DEFAULT
        mark = " (default)" * default + " (lowest)" * (r is best)
        lines.append(
            f"| {r['rank']} | {r['reg']:.2f} | {r['reg_bias']:.2f} | {r['iters']} "
            f"| {r['rmse']:.4f}{mark} |"
        )
    note = "\n\n" + _report.measured(data)
    out = {"explicit": "\n".join(lines) + note}
    lines = [
        "| data | iALS defaults p@10 | EASE best $\\lambda$ p@10 | popularity p@10 |",
        "|---|---:|---:|---:|",
    ]
    for r in data["implicit"]:
        lines.append(
            f"| {r['data']} | {r['ials']:.3f} | {r['ease']:.3f} ($\\lambda$ = {r['ease_lambda']}) "
            f"| {r['popular']:.3f} |"
        )
    out["implicit"] = "\n".join(lines) + note
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=_report.default_json(__file__))
    args = ap.parse_args(argv)
    home = Path(os.environ.get("DMF_DATA", ""))
    if not (home / "ml-100k").is_dir() or not (home / "lastfm-2k").is_dir():
        raise SystemExit("set DMF_DATA to the folder holding ml-100k/ and lastfm-2k/")
    result = {**_report.context(__file__, argv)}
    result["explicit"] = explicit_grid(home)
    result["implicit"] = implicit_rows(home)
    print("\n\n".join(figures(result).values()))
    _report.write(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
