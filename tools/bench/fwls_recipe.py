"""The feature-weighted blending recipe of docs/evaluation.md, measured on MovieLens 100K u1.

Run: ``DMF_DATA=... python tools/bench/fwls_recipe.py`` (writes
``docs/_data/fwls_recipe.json``; ``tools/render_docs.py`` renders the table).

A seeded 15 % of each user's u1.base ratings is the validation set; the members fit on
the other 85 % (the SGD members with ``seed=0``, so a run is repeatable), the blends
learn their weights on the validation set, and everything is scored on u1.test.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import _report

import dmf


def run() -> dict:
    train, test = dmf.datasets.movielens("100k", split="u1")
    sub, valid = dmf.split.by_user(train, test_size=0.15, seed=0)
    members = {
        "Baseline()": dmf.Baseline(),
        "ALS()": dmf.ALS(),
        "SGD()": dmf.SGD(seed=0),
        "SGD(rank=16, biases=False)": dmf.SGD(rank=16, biases=False, seed=0),
    }
    fitted = {name: m.fit(sub) for name, m in members.items()}
    rmse = {name: float(dmf.evaluate(m, test, ["rmse"])["rmse"]) for name, m in fitted.items()}
    four = list(fitted.values())
    rows = [{"model": f"member `{n}` on the 85 %", "rmse": v} for n, v in rmse.items()]
    for label, models, method in (
        ('`method="nnls"`, the four members', four, "nnls"),
        ('`method="fwls"`, the four members', four, "fwls"),
        ('`method="fwls"`, Baseline + ALS + SGD only', four[:3], "fwls"),
    ):
        blend = dmf.blend(models, validation=valid, method=method, alpha=1.0)
        rows.append({"model": label, "rmse": float(dmf.evaluate(blend, test, ["rmse"])["rmse"])})
    full = dmf.SGD(seed=0).fit(train)
    rows.append({"model": "`SGD()` on all of u1.base", "rmse": float(
        dmf.evaluate(full, test, ["rmse"])["rmse"])})  # fmt: skip
    best = min(rmse, key=rmse.get)
    return {"rows": rows, "best_member": best, "best_member_rmse": rmse[best]}


def figures(data: dict) -> dict[str, str]:
    """What the pages show of ``docs/_data/fwls_recipe.json``."""
    lines = ["| model | u1.test RMSE |", "|---|---:|"]
    lines += [f"| {r['model']} | {r['rmse']:.4f} |" for r in data["rows"]]
    by = {r["model"]: r["rmse"] for r in data["rows"]}
    fwls = by['`method="fwls"`, the four members']
    nnls = by['`method="nnls"`, the four members']
    return {
        "table": "\n".join(lines) + "\n\n" + _report.measured(data),
        "gain": f"{data['best_member_rmse'] - fwls:.4f}",
        "gain_over_nnls": f"{nnls - fwls:.4f}",
        "best_member": f"`{data['best_member']}`",
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=_report.default_json(__file__))
    args = ap.parse_args(argv)
    result = {**_report.context(__file__, argv), **run()}
    print(figures(result)["table"])
    _report.write(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
