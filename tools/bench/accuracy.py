"""The accuracy of every model's documented defaults on MovieLens 100K u1, in one run.

Run: ``DMF_DATA=... python tools/bench/accuracy.py`` (writes ``docs/_data/accuracy.json``;
``tools/render_docs.py`` puts the figures into README.md and the docs).

Rating models are scored by test RMSE and MAE; ranking models by precision, recall
and NDCG at 10 under the protocol of ``docs/evaluation.md`` (every training rating an
interaction, relevant = test rating >= 4, training items masked). Seeded models use
``seed=0``. Each fit's factors are hashed, so two runs (two commits) can be compared
bit for bit: ``--compare OTHER.json`` prints the models whose figures or hashes differ.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import _report
import numpy as np

import dmf

RATING = {
    "Baseline": dict(method="baseline"),
    "ALS": dict(method="als"),
    "ALS, CG solver": dict(method="als", solver="cg"),
    "SGD (seed 0)": dict(method="sgd", seed=0),
}
RANKING = {
    "ALS(implicit=True)": dict(method="als", implicit=True),
    "BPR (seed 0)": dict(method="bpr", seed=0),
    "Popular": dict(method="popular"),
}
TOPN = ["precision@10", "recall@10", "ndcg@10"]


def digest(model: dmf.Recommender) -> str:
    """SHA-1 of the fitted arrays (factors, biases, scores), in a fixed order."""
    h = hashlib.sha1()
    for name in sorted(vars(model)):
        value = getattr(model, name)
        if name.endswith("_") and isinstance(value, np.ndarray) and value.dtype != object:
            h.update(name.encode())
            h.update(np.ascontiguousarray(value).tobytes())
    return h.hexdigest()[:16]


def run() -> dict:
    train, test = dmf.datasets.movielens("100k", split="u1")
    rows = []
    for group, models, metrics, extra in (
        ("rating", RATING, ["rmse", "mae"], {}),
        ("ranking", RANKING, TOPN, {"train": train, "relevance_threshold": 4}),
    ):
        for name, params in models.items():
            t = time.perf_counter()
            model = dmf.fit(train, **params)
            secs = time.perf_counter() - t
            scores = dmf.evaluate(model, test, metrics, **extra)
            row = {"model": name, "group": group, "params": params, "fit_s": secs}
            row.update({m: float(scores[m]) for m in metrics})
            row["sha1"] = digest(model)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return {"rows": rows}


def figures(data: dict) -> dict[str, str]:
    """What the pages show of ``docs/_data/accuracy.json``."""
    rows = {r["model"]: r for r in data["rows"]}
    rating = ["| model | test RMSE | test MAE |", "|---|---:|---:|"]
    ranking = ["| model | precision@10 | recall@10 | NDCG@10 |", "|---|---:|---:|---:|"]
    for r in data["rows"]:
        if r["group"] == "rating":
            rating.append(f"| `{r['model']}` | {r['rmse']:.4f} | {r['mae']:.4f} |")
        else:
            ranking.append(
                f"| `{r['model']}` | {r['precision@10']:.3f} | {r['recall@10']:.3f} "
                f"| {r['ndcg@10']:.3f} |"
            )
    note = "\n\n" + _report.measured(data)
    out = {"rating": "\n".join(rating) + note, "ranking": "\n".join(ranking) + note}
    for name, key in (("ALS", "als"), ("SGD (seed 0)", "sgd"), ("Baseline", "baseline")):
        out[f"{key}_rmse"] = f"{rows[name]['rmse']:.3f}"
    for name, key in (("ALS(implicit=True)", "ials"), ("BPR (seed 0)", "bpr"), ("Popular", "pop")):
        out[f"{key}_p10"] = f"{rows[name]['precision@10']:.3f}"
        out[f"{key}_ndcg10"] = f"{rows[name]['ndcg@10']:.3f}"
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=_report.default_json(__file__))
    ap.add_argument("--compare", type=Path, help="another run's JSON: print what differs")
    args = ap.parse_args(argv)
    result = {**_report.context(__file__, argv), **run()}
    if args.compare:
        other = {r["model"]: r for r in json.loads(args.compare.read_text())["rows"]}
        for r in result["rows"]:
            o = other.get(r["model"], {})
            same = o.get("sha1") == r["sha1"]
            word = "identical" if same else "DIFFERENT"
            print(f"{r['model']:24s} {word} {r['sha1']} {o.get('sha1')}")
        return 0
    _report.write(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
