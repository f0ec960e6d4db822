"""The ranking blend recipe on MovieLens 100K: weights chosen on validation, members refitted.

Run it as a script (``$DMF_DATA`` names the folder holding ``ml-100k/``)::

    nice python tools/bench/rank_blend.py --json docs/_data/rank_blend.json
    nice python tools/bench/rank_blend.py --folds u1,u2,u3,u4,u5   # every official fold

For each fold ``uN`` (``uN.base`` / ``uN.test``; every training rating an interaction,
relevant = test rating >= 4, training items masked, k = 10, as in ``dmf.evaluate``):

1. hold out a per-user 20 % of ``uN.base`` as validation (``dmf.split.by_user``, seed 0);
2. fit the members with their defaults on the other 80 %: ``ALS(implicit=True)``,
   ``BPR()``, ``Popular()``;
3. choose the blend weights for NDCG@10 on the validation set
   (``dmf.blend(..., objective="ndcg@10")``), the 80 % masked;
4. refit every member on all of ``uN.base`` with the same weights (``RankBlend.refit``);
5. score ``uN.test``: each member and the blend, before and after the refit.

Only step 5 reads the test fold; nothing is chosen on it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dmf

METRICS = ["precision@10", "recall@10", "ndcg@10"]
THRESHOLD = 4.0


def members() -> list[tuple[str, Any]]:
    return [("ALS(implicit=True)", dmf.ALS(implicit=True)), ("BPR()", dmf.BPR()),
            ("Popular()", dmf.Popular())]  # fmt: skip


def scores(model: Any, test: Any, train: Any) -> dict[str, float]:
    res = dmf.evaluate(model, test, METRICS, train=train, relevance_threshold=THRESHOLD)
    return {m: float(res[m]) for m in METRICS} | {"n_users": int(res["n_users"])}


def run_fold(fold: str) -> dict[str, Any]:
    train, test = dmf.datasets.movielens("100k", split=fold)
    sub, valid = dmf.split.by_user(train, test_size=0.2, seed=0)
    t0 = time.perf_counter()
    fitted = [est.fit(sub) for _, est in members()]
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    rb = dmf.blend(fitted, validation=valid, objective="ndcg@10", train=sub,
                   relevance_threshold=THRESHOLD)  # fmt: skip
    blend_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    full = rb.refit(train)
    refit_s = time.perf_counter() - t0
    names = [n for n, _ in members()]
    rows = []
    for stage, model in (("fitted on 80 % of base", rb), ("refitted on all of base", full)):
        for name, m in zip(names, model.members_, strict=True):
            rows.append({"model": name, "stage": stage, **scores(m, test, train)})
        rows.append({"model": "blend", "stage": stage, **scores(model, test, train)})
    refit = [r for r in rows if r["stage"].startswith("refit")]
    best = max(refit[:-1], key=lambda r: r["ndcg@10"])
    out = {
        "fold": fold,
        "weights": dict(zip(names, rb.weights_.tolist(), strict=True)),
        "validation_ndcg@10": {
            "blend": rb.validation_score_,
            **dict(zip(names, rb.member_scores_, strict=True)),
        },
        "seconds": {"members_fit": fit_s, "weight_search": blend_s, "refit": refit_s},
        "rows": rows,
        "best_member": best["model"],
        "gain_ndcg@10_over_best_member": refit[-1]["ndcg@10"] - best["ndcg@10"],
    }
    print(f"{fold}: {json.dumps(out, default=float)}", file=sys.stderr)
    return out


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| fold | weights (ALS, BPR, Popular) | model | stage | precision@10 | NDCG@10 |",
             "|---|---|---|---|---:|---:|"]  # fmt: skip
    for res in results:
        w = ", ".join(f"{v:g}" for v in res["weights"].values())
        for r in res["rows"]:
            lines.append(f"| {res['fold']} | {w} | {r['model']} | {r['stage']} | "
                         f"{r['precision@10']:.4f} | {r['ndcg@10']:.4f} |")  # fmt: skip
        lines.append(f"| {res['fold']} | | gain over {res['best_member']} | refitted | | "
                     f"{res['gain_ndcg@10_over_best_member']:+.4f} |")  # fmt: skip
    return "\n".join(lines)


def write_json(path: Path, out: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1, default=float) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folds", default="u1", help="comma-separated official folds, u1 ... u5")
    ap.add_argument("--json", type=Path, help="write the results to this JSON file")
    args = ap.parse_args(argv)
    if not (Path(os.environ.get("DMF_DATA", "")) / "ml-100k").is_dir():
        raise SystemExit("set DMF_DATA to the folder holding ml-100k/")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip()  # fmt: skip
    out: dict[str, Any] = {
        "command": "python tools/bench/rank_blend.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "commit": commit,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "started_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "load_before": os.getloadavg(),
    }
    out["folds"] = [run_fold(f.strip()) for f in args.folds.split(",") if f.strip()]
    out["load_after"] = os.getloadavg()
    if args.json:
        write_json(args.json, out)
    print(table(out["folds"]))
    return 0


def figures(data: dict[str, Any]) -> dict[str, str]:
    """What the pages show of ``docs/_data/rank_blend.json`` (tools/render_docs.py)."""
    lines = [
        "| fold | weights chosen (ALS, BPR, Popular) | ALS NDCG@10 | BPR | "
        "blend, members on 80 % | blend refitted | gain over best member |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    out = {}
    gains = []
    for f in data["folds"]:
        rows = {(r["model"], r["stage"].startswith("refitted")): r for r in f["rows"]}
        w = ", ".join(f"{v:g}" for v in f["weights"].values())
        gain = f["gain_ndcg@10_over_best_member"]
        gains.append(gain)
        lines.append(
            f"| {f['fold']} | {w} | {rows['ALS(implicit=True)', True]['ndcg@10']:.4f} "
            f"| {rows['BPR()', True]['ndcg@10']:.4f} | {rows['blend', False]['ndcg@10']:.4f} "
            f"| {rows['blend', True]['ndcg@10']:.4f} | {gain:+.4f} |"
        )
        for model, key in (("blend", "blend"), ("ALS(implicit=True)", "als")):
            for metric in ("ndcg@10", "precision@10"):
                out[f"{f['fold']}.{key}.{metric}"] = f"{rows[model, True][metric]:.4f}"
        out[f"{f['fold']}.gain"] = f"{gain:+.4f}"
    out["mean_gain"] = f"{sum(gains) / len(gains):+.4f}"
    out["table"] = "\n".join(lines)
    return out


if __name__ == "__main__":
    sys.exit(main())
