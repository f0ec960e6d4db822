"""dmf.SGD against Surprise's SVD, side by side, same data and same hyper-parameters.

Run: ``python tools/bench/sgd_vs_surprise.py [--data ml100k,ml1m] [--repeat 3] [--rounds 3]``
(writes ``docs/_data/sgd_vs_surprise.json``; ``tools/render_docs.py`` renders it).

Data: MovieLens 100K's official u1 split (from ``$DMF_DATA``) and the synthetic
ML-1M shape (6,040 x 3,706, 1M ratings; ``dmf.datasets.synthetic``, seed 0,
80/20 random split, cached by ``benchmarks/__init__.py``). Settings: Surprise
SVD's defaults (rank 100, 20 epochs, learning rate 0.005, regularisation 0.02
for factors and biases, initial factors N(0, 0.1^2)) given to both libraries;
dmf also with its own defaults for reference.

Each library runs in its own Python process, one after the other (never at the
same time), ``--rounds`` times in turn (Surprise, dmf, Surprise, dmf, ...), so a
host that speeds up or slows down during the run affects both. Fit time is the
``fit`` call alone: Surprise's ``build_full_trainset`` and dmf's ``from_pandas``
are done before the clock starts, and dmf's numba kernels are compiled by a
tiny fit first (that one-off cost is printed apart). Each process makes
``--repeat`` fits (seeds 0, 1, ...); the table gives the best fit over all
rounds, and the notes each round's ratio of best fits. Test RMSE is the mean
over all fits (seeds), since one seed's RMSE varies by about 0.005 on ML-100K:
predictions clipped to the rating scale, users/items unseen in training
predicted by the known biases (both libraries do this).

The machine is shared: compare the ratios measured in one run, not absolute times.
The CPU column (process CPU time of the fit, all threads) is less sensitive to
other jobs than wall time: on an idle 2-core machine dmf's wall time is about
half its CPU time (two threads busy), Surprise's about equal to it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import _report

ROOT = Path(__file__).resolve().parents[2]

#: Surprise SVD's defaults, in each library's words.
SURPRISE = {"n_factors": 100, "n_epochs": 20, "lr_all": 0.005, "reg_all": 0.02, "init_std_dev": 0.1}
DMF_SAME = {
    "rank": 100,
    "max_iter": 20,
    "lr": 0.005,
    "reg": 0.02,
    "reg_bias": 0.02,
    "init_scale": 0.1,
}


def data_files(name: str) -> tuple[str, str]:
    """(train, test) Parquet paths for a data set name."""
    if name == "ml100k":
        import pandas as pd

        home = Path(os.environ.get("DMF_DATA", ROOT.parent / "shared" / "data")) / "ml-100k"
        out = Path(os.environ.get("DMF_BENCH_CACHE", Path.home() / ".cache" / "dmf-bench"))
        out = out / "ml100k-u1"
        out.mkdir(parents=True, exist_ok=True)
        names = ["user", "item", "rating", "timestamp"]
        paths = []
        for part in ("base", "test"):
            path = out / f"u1.{part}.parquet"
            if not path.exists():
                df = pd.read_csv(home / f"u1.{part}", sep="\t", names=names)
                df[names[:3]].astype({"rating": "float32"}).to_parquet(path, index=False)
            paths.append(str(path))
        return paths[0], paths[1]
    sys.path.insert(0, str(ROOT))
    from benchmarks.common import files

    train, test = files(name)
    return str(train), str(test)


# ------------------------------------------------------------------ workers
def run_surprise(train: str, test: str, params: dict, repeat: int) -> dict:
    import numpy as np
    import pandas as pd
    from surprise import SVD, Dataset, Reader

    tr, te = pd.read_parquet(train), pd.read_parquet(test)
    reader = Reader(rating_scale=(float(tr.rating.min()), float(tr.rating.max())))
    trainset = Dataset.load_from_df(tr[["user", "item", "rating"]], reader).build_full_trainset()
    testset = list(zip(te.user, te.item, te.rating.astype(float), strict=True))
    best, cpu, algos = np.inf, np.inf, []
    for r in range(repeat):
        algos.append(SVD(random_state=r, **params))
        t, c = time.perf_counter(), time.process_time()
        algos[-1].fit(trainset)
        best = min(best, time.perf_counter() - t)
        cpu = min(cpu, time.process_time() - c)
    rmses = []
    for algo in algos:  # scored after all fits, as for dmf
        err = np.array([p.est - p.r_ui for p in algo.test(testset)])
        rmses.append(float(np.sqrt(np.mean(err**2))))
    return {"fit_s": best, "cpu_s": cpu, "rmses": rmses}


def run_dmf(train: str, test: str, params: dict, repeat: int) -> dict:
    import numpy as np
    import pandas as pd

    import dmf
    from dmf.testing import random_ratings

    tr, te = pd.read_parquet(train), pd.read_parquet(test)
    ratings = dmf.from_pandas(tr)
    t = time.perf_counter()
    dmf.SGD(**{**params, "max_iter": 1}).fit(random_ratings())  # compile the kernel
    compile_s = time.perf_counter() - t
    best, cpu, models = np.inf, np.inf, []
    for r in range(repeat):
        model = dmf.SGD(seed=r, **params)
        t, c = time.perf_counter(), time.process_time()
        model.fit(ratings)
        best = min(best, time.perf_counter() - t)
        cpu = min(cpu, time.process_time() - c)
        models.append(model)
    # Scored after all fits: whatever a scoring call leaves running (a BLAS
    # library's spinning threads, say) must not land in the next fit's time.
    rmses = [float(dmf.evaluate(m, te, metrics=["rmse"])["rmse"]) for m in models]
    return {
        "fit_s": best,
        "cpu_s": cpu,
        "rmses": rmses,
        "compile_s": compile_s,
        "grid": model.grid_,
        "epoch_s": float(model.history["seconds"].median()),
    }


def merge(runs: list[dict]) -> dict:
    """One row from several rounds of the same library: best times, every fit's RMSE."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[0]
    out = dict(min(ok, key=lambda r: r["fit_s"]))
    out["cpu_s"] = min(r["cpu_s"] for r in ok)
    out["rmses"] = [x for r in ok for x in r["rmses"]]
    return out


def worker(args: argparse.Namespace) -> None:
    params = json.loads(args.params)
    fn = run_surprise if args.worker == "surprise" else run_dmf
    print(json.dumps(fn(args.train, args.test, params, args.repeat)))


def spawn(lib: str, train: str, test: str, params: dict, repeat: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", lib, "--train", train, "--test", test]
    cmd += ["--params", json.dumps(params), "--repeat", str(repeat)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="ml100k,ml1m")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=_report.default_json(__file__))
    ap.add_argument("--worker", choices=["surprise", "dmf"])
    ap.add_argument("--train")
    ap.add_argument("--test")
    ap.add_argument("--params", default="{}")
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    result = {**_report.context(__file__), "data": {}}
    for name in args.data.split(","):
        train, test = data_files(name)
        repeat = args.repeat if name == "ml100k" else max(1, args.repeat // 2)
        rounds = []
        for _ in range(args.rounds):
            rounds.append(
                (
                    spawn("surprise", train, test, SURPRISE, repeat),
                    spawn("dmf", train, test, DMF_SAME, repeat),
                )
            )
        s, d = merge([r[0] for r in rounds]), merge([r[1] for r in rounds])
        dd = spawn("dmf", train, test, {}, repeat)
        per_round = [a["fit_s"] / b["fit_s"] for a, b in rounds if "fit_s" in a and "fit_s" in b]
        result["data"][name] = {
            "rows": [
                {"library": "Surprise SVD", "settings": SURPRISE_LABEL, **s},
                {"library": "dmf SGD", "settings": "same as Surprise", **d},
                {"library": "dmf SGD", "settings": DMF_LABEL, **dd},
            ],
            "speedup": s["fit_s"] / d["fit_s"] if "fit_s" in s and "fit_s" in d else None,
            "per_round": per_round,
        }
        print(table(result, name), flush=True)
    _report.write(args.json, result)


SURPRISE_LABEL = "defaults (rank 100, 20 ep, lr .005, reg .02)"
DMF_LABEL = "dmf defaults (rank 64, 45 ep, lr .01, reg .08)"
LABELS = {"ml100k": "ML-100K u1", "ml1m": "synthetic ML-1M shape"}


def table(result: dict, name: str) -> str:
    """One data set's rows: best fit over all rounds, test RMSE as the mean of every fit."""
    run = result["data"][name]
    ref = run["rows"][0]
    lines = []
    for r in run["rows"]:
        if "error" in r:
            lines.append(
                f"| {LABELS[name]} | {r['library']} | {r['settings']} | | | | | {r['error']} |"
            )
            continue
        speed = "" if r is ref else f"{ref['fit_s'] / r['fit_s']:.1f}x"
        notes = ""
        if r is run["rows"][1] and run["per_round"]:
            notes = "rounds: " + ", ".join(f"{x:.1f}x" for x in run["per_round"])
        rm = r["rmses"]
        lines.append(
            f"| {LABELS[name]} | {r['library']} | {r['settings']} | {r['fit_s']:.3f} "
            f"| {r['cpu_s']:.3f} | {sum(rm) / len(rm):.4f} ({min(rm):.4f}-{max(rm):.4f}) "
            f"| {speed} | {notes} |"
        )
    return "\n".join(lines)


def figures(data: dict) -> dict[str, str]:
    """What the pages show of ``docs/_data/sgd_vs_surprise.json``."""
    head = [
        "| data | library | settings | fit s (best) | CPU s | test RMSE (mean, range) "
        "| dmf speed-up (wall) | notes |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    out = {"table": "\n".join(head + [table(data, n) for n in data["data"]])}
    out["table"] += "\n\n" + _report.measured(data)
    for name, run in data["data"].items():
        if run["speedup"]:
            out[f"{name}_speedup"] = f"{run['speedup']:.1f}x"
    return out


if __name__ == "__main__":
    main()
