"""dmf against the libraries its users come from, side by side in one run.

Not an asv benchmark: run it as a script (needs the ``bench`` extra: pyspark,
scikit-surprise, implicit; and Java 17 for Spark)::

    python tools/bench/peers.py                          # ML-100K u1, ML-1M and ML-10M shapes
    python tools/bench/peers.py --data ml100k,ml1m       # the smaller ones only
    python tools/bench/peers.py --no-write               # print, write no JSON

What makes it a fair comparison:

- the same files: every data set is a (train, test) pair of Parquet files that
  every library reads itself: MovieLens 100K's official ``u1.base``/``u1.test``
  (from ``$DMF_DATA/ml-100k``, converted verbatim), and ML-1M/ML-10M-shaped data
  from ``dmf.datasets.synthetic`` (seed 0) split 80/20 by a seeded mask
  (``benchmarks/__init__.py``: the same files the asv suite uses);
- each run (library x method x data set) in its own fresh Python process, so no
  run inherits another's warm caches or memory; peak RSS is the largest sum of
  resident memory over the run's process tree (Spark's JVM included), sampled
  every 50 ms;
- fit time is the fit call alone; Spark's JVM/session start-up is reported in
  its own column; loading the files is excluded for everybody; dmf's numba
  kernels are compiled on a tiny data set before the clock starts (a JIT cost
  paid once per process, reported as ``startup``);
- matched settings per task: the same rank, regularisation (same meaning:
  ALS-WR ``lambda * n_u`` for Spark and dmf explicit ALS, plain ``lambda`` for
  implicit), iterations/epochs, learning rate and initial scale; predictions
  clipped to the rating scale for everybody; Spark cannot score ids unseen in
  training (coldStartStrategy "nan"), so those get the training mean;
- implicit feedback: ratings >= 4 become positives (value 1, confidence
  1 + 40 * 1 = 41) for both dmf and ``implicit``; precision@10 is computed by
  one function here from each library's factors (train positives masked, users
  with at least one test positive).

It writes ``docs/_data/peers.json`` (each data set measured replaces its own run;
the machine, its load and the library versions with it); ``tools/render_docs.py``
puts the tables into ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
JSON = ROOT / "docs" / "_data" / "peers.json"

DATA = {
    "ml100k": "MovieLens 100K, official u1 split (80,000 / 20,000)",
    "ml1m": "synthetic, ML-1M shape (6,040 x 3,706, 1M ratings, 80/20)",
    "ml10m": "synthetic, ML-10M shape (69,878 x 10,677, 10M ratings, 80/20)",
}

# --------------------------------------------------------------- the tasks
# (task, library, method, settings shown, params passed to the child)
RANK = 64
ITER = 10
TASKS: list[tuple[str, str, str, str, dict[str, Any]]] = [
    (
        "baseline",
        "dmf",
        "Baseline",
        "reg_u 15, reg_i 10, 10 iterations",
        {"reg_user": 15.0, "reg_item": 10.0, "max_iter": 10},
    ),
    (
        "baseline",
        "Surprise",
        "BaselineOnly",
        "ALS, reg_u 15, reg_i 10, 10 epochs",
        {"reg_user": 15.0, "reg_item": 10.0, "max_iter": 10},
    ),
    (
        "als",
        "dmf",
        "ALS (Cholesky, ALS-WR, biases)",
        f"rank {RANK}, reg 0.1, {ITER} iterations",
        {"rank": RANK, "reg": 0.1, "max_iter": ITER},
    ),
    (
        "als",
        "Spark MLlib",
        "ALS local[2]",
        f"rank {RANK}, regParam 0.1, {ITER} iterations",
        {"rank": RANK, "reg": 0.1, "max_iter": ITER},
    ),
    (
        "sgd",
        "dmf",
        "SGD (DSGD, biased MF)",
        "rank 100, 20 epochs, lr 0.005, reg 0.02, init sd 0.1",
        {"rank": 100, "max_iter": 20, "lr": 0.005, "reg": 0.02, "init_scale": 0.1},
    ),
    (
        "sgd",
        "Surprise",
        "SVD",
        "rank 100, 20 epochs, lr 0.005, reg 0.02, init sd 0.1 (its defaults)",
        {"rank": 100, "max_iter": 20, "lr": 0.005, "reg": 0.02, "init_scale": 0.1},
    ),
    (
        "implicit",
        "dmf",
        "ALS implicit (CG, 3 steps)",
        f"rank {RANK}, reg 0.01, alpha 40, {ITER} iterations, ratings >= 4 as positives",
        {"rank": RANK, "reg": 0.01, "alpha": 40.0, "max_iter": ITER},
    ),
    (
        "implicit",
        "implicit",
        "ALS (CG), 2 threads",
        f"rank {RANK}, reg 0.01, alpha 40, {ITER} iterations, ratings >= 4 as positives",
        {"rank": RANK, "reg": 0.01, "alpha": 40.0, "max_iter": ITER},
    ),
]


# ----------------------------------------------------------------- the data
def data_files(name: str) -> tuple[Path, Path]:
    """(train, test) Parquet files of a data set, written on first use."""
    if name == "ml100k":
        home = os.environ.get("DMF_DATA")
        if not home or not (Path(home) / "ml-100k" / "u1.base").exists():
            raise SystemExit("MovieLens 100K not found: set DMF_DATA to a folder with ml-100k/")
        sys.path.insert(0, str(ROOT))
        from benchmarks.common import cache_dir

        folder = cache_dir() / "ml100k-u1"
        folder.mkdir(parents=True, exist_ok=True)
        out = []
        for part in ("base", "test"):
            path = folder / f"u1.{part}.parquet"
            if not path.exists():
                df = pd.read_csv(
                    Path(home) / "ml-100k" / f"u1.{part}",
                    sep="\t",
                    names=["user", "item", "rating", "timestamp"],
                )
                df["rating"] = df["rating"].astype(np.float32)
                df[["user", "item", "rating"]].to_parquet(path, index=False)
            out.append(path)
        return out[0], out[1]
    sys.path.insert(0, str(ROOT))
    from benchmarks.common import files

    return files({"ml1m": "ml1m", "ml10m": "large"}[name])


def _read(path: str) -> pd.DataFrame:
    df = pd.read_parquet(path)
    return df.astype({"user": np.int64, "item": np.int64, "rating": np.float32})


def _positives(train: pd.DataFrame, test: pd.DataFrame) -> tuple[Any, ...]:
    """Binarised data (ratings >= 4) as CSR user x item matrices over shared codes."""
    import scipy.sparse as sp

    users = pd.Index(np.union1d(train["user"], test["user"]))
    items = pd.Index(np.union1d(train["item"], test["item"]))

    def csr(df: pd.DataFrame) -> Any:
        pos = df[df["rating"] >= 4]
        u, i = users.get_indexer(pos["user"]), items.get_indexer(pos["item"])
        m = sp.csr_matrix((np.ones(len(pos), np.float32), (u, i)), shape=(len(users), len(items)))
        m.sum_duplicates()
        return m

    return users, items, csr(train), csr(test)


def precision_at_10(U: np.ndarray, V: np.ndarray, train_pos: Any, test_pos: Any) -> float:
    """Mean precision@10 over users with a test positive; train positives masked."""
    users = np.flatnonzero(np.diff(test_pos.indptr) > 0)
    hits = 0.0
    for a in range(0, len(users), 2048):
        block = users[a : a + 2048]
        scores = U[block].astype(np.float32) @ V.T.astype(np.float32)
        seen = train_pos[block]
        scores[np.repeat(np.arange(len(block)), np.diff(seen.indptr)), seen.indices] = -np.inf
        top = np.argpartition(-scores, 10, axis=1)[:, :10]
        truth = test_pos[block]
        for r in range(len(block)):
            row = truth.indices[truth.indptr[r] : truth.indptr[r + 1]]
            hits += np.isin(top[r], row).sum()
    return float(hits / (10 * len(users))) if len(users) else float("nan")


# ------------------------------------------------------------- child runs
def _rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    pred = np.clip(pred, 1.0, 5.0)
    return float(np.sqrt(np.mean((pred.astype(np.float64) - truth) ** 2)))


def child_dmf(task: str, params: dict[str, Any], train_p: str, test_p: str) -> dict[str, Any]:
    import dmf
    from dmf.testing import random_frame

    t0 = time.perf_counter()
    tiny = dmf.from_pandas(random_frame(40, 30, 0.3))
    if task == "baseline":
        make = lambda: dmf.Baseline(**params)  # noqa: E731
    elif task == "als":
        make = lambda: dmf.ALS(weighted_reg=True, seed=0, **params)  # noqa: E731
    elif task == "sgd":
        p = dict(params)
        make = lambda: dmf.SGD(reg_bias=p["reg"], seed=0, **p)  # noqa: E731
    else:
        # the implicit library's model (Hu et al.), not dmf's top-N defaults
        make = lambda: dmf.ALS(  # noqa: E731
            implicit=True, solver="cg", cg_steps=3, weighted_reg=False, seed=0,
            unobserved_weight=1.0, init_scale=0.1, **params,
        )  # fmt: skip
    warm = make().set_params(**{k: 1 for k in ("max_iter", "n_epochs", "n_iter") if k in params})
    warm.fit(tiny)  # compile the kernels: a once-per-process cost, not the fit's
    startup = time.perf_counter() - t0
    train_df, test_df = _read(train_p), _read(test_p)
    if task == "implicit":
        users, items, tr_pos, te_pos = _positives(train_df, test_df)
        coo = tr_pos.tocoo()
        r = dmf.from_pandas(
            pd.DataFrame({"user": users[coo.row], "item": items[coo.col], "rating": coo.data})
        )
        t = time.perf_counter()
        model = make().fit(r)
        fit_s = time.perf_counter() - t
        # Factors over the shared codes (users/items without train positives: zeros).
        U = np.zeros((len(users), model.user_factors_.shape[1]), np.float32)
        V = np.zeros((len(items), model.item_factors_.shape[1]), np.float32)
        U[users.get_indexer(model.users_)] = model.user_factors_
        V[items.get_indexer(model.items_)] = model.item_factors_
        return {"fit_s": fit_s, "startup_s": startup, "p@10": precision_at_10(U, V, tr_pos, te_pos)}
    r = dmf.from_pandas(train_df)
    t = time.perf_counter()
    model = make().fit(r)
    fit_s = time.perf_counter() - t
    pred = model.predict(test_df["user"].to_numpy(), test_df["item"].to_numpy(), clip=True)
    return {"fit_s": fit_s, "startup_s": startup, "rmse": _rmse(pred, test_df["rating"].to_numpy())}


def child_surprise(task: str, params: dict[str, Any], train_p: str, test_p: str) -> dict[str, Any]:
    from surprise import SVD, BaselineOnly, Dataset, Reader

    train_df, test_df = _read(train_p), _read(test_p)
    data = Dataset.load_from_df(train_df[["user", "item", "rating"]], Reader(rating_scale=(1, 5)))
    trainset = data.build_full_trainset()
    if task == "baseline":
        algo = BaselineOnly(
            bsl_options={
                "method": "als",
                "reg_u": params["reg_user"],
                "reg_i": params["reg_item"],
                "n_epochs": params["max_iter"],
            },
            verbose=False,
        )
    else:
        algo = SVD(
            n_factors=params["rank"],
            n_epochs=params["max_iter"],
            lr_all=params["lr"],
            reg_all=params["reg"],
            init_std_dev=params["init_scale"],
            random_state=0,
        )
    t = time.perf_counter()
    algo.fit(trainset)
    fit_s = time.perf_counter() - t
    # Surprise's own predict (clips to the rating scale; unknown ids: its baseline fallback).
    pred = np.array(
        [algo.predict(u, i).est for u, i in zip(test_df["user"], test_df["item"], strict=True)]
    )
    return {"fit_s": fit_s, "startup_s": 0.0, "rmse": _rmse(pred, test_df["rating"].to_numpy())}


def child_spark(task: str, params: dict[str, Any], train_p: str, test_p: str) -> dict[str, Any]:
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import SparkSession

    t0 = time.perf_counter()
    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.driver.memory", "8g")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    spark.sparkContext.setCheckpointDir(tempfile.mkdtemp(prefix="spark-ckpt-"))
    startup = time.perf_counter() - t0
    train = spark.read.parquet(train_p).cache()
    test_df = _read(test_p)
    train.count()
    als = ALS(
        rank=params["rank"],
        maxIter=params["max_iter"],
        regParam=params["reg"],
        userCol="user",
        itemCol="item",
        ratingCol="rating",
        coldStartStrategy="nan",
        seed=0,
    )
    t = time.perf_counter()
    model = als.fit(train)
    fit_s = time.perf_counter() - t
    mean = float(train.agg({"rating": "avg"}).collect()[0][0])
    test = spark.createDataFrame(test_df)
    out = model.transform(test).select("user", "item", "rating", "prediction").toPandas()
    pred = out["prediction"].fillna(mean).to_numpy()
    spark.stop()
    return {"fit_s": fit_s, "startup_s": startup, "rmse": _rmse(pred, out["rating"].to_numpy())}


def child_implicit(task: str, params: dict[str, Any], train_p: str, test_p: str) -> dict[str, Any]:
    from implicit.cpu.als import AlternatingLeastSquares

    train_df, test_df = _read(train_p), _read(test_p)
    _, _, tr_pos, te_pos = _positives(train_df, test_df)
    model = AlternatingLeastSquares(
        factors=params["rank"],
        regularization=params["reg"],
        alpha=params["alpha"],
        iterations=params["max_iter"],
        use_cg=True,
        num_threads=2,
        random_state=0,
    )
    t = time.perf_counter()
    model.fit(tr_pos, show_progress=False)
    fit_s = time.perf_counter() - t
    p10 = precision_at_10(model.user_factors, model.item_factors, tr_pos, te_pos)
    return {"fit_s": fit_s, "startup_s": 0.0, "p@10": p10}


CHILDREN = {
    "dmf": child_dmf,
    "Surprise": child_surprise,
    "Spark MLlib": child_spark,
    "implicit": child_implicit,
}


# ---------------------------------------------------------------- parent
def _tree_rss(proc: Any) -> int:
    import psutil

    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_child(library: str, task: str, params: dict[str, Any], data: str, timeout: float) -> dict:
    """One run in a fresh process; returns its result plus peak RSS of the process tree."""
    import psutil

    train, test = data_files(data)
    cmd = [
        sys.executable,
        __file__,
        "--child",
        json.dumps([library, task, params, str(train), str(test)]),
    ]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    ps = psutil.Process(proc.pid)
    peak, t0 = 0, time.perf_counter()
    while proc.poll() is None:
        try:
            peak = max(peak, _tree_rss(ps))
        except psutil.Error:
            pass
        if time.perf_counter() - t0 > timeout:
            for p in [*ps.children(recursive=True), ps]:
                try:
                    p.kill()
                except psutil.Error:
                    pass
            proc.wait()
            return {"error": f"timeout after {timeout:.0f} s", "peak_rss": peak}
        time.sleep(0.05)
    out, err = proc.communicate()
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (err.strip().splitlines() or ["?"])[-1][:200]
        return {"error": f"exit {proc.returncode}: {tail}", "peak_rss": peak}
    res = json.loads(lines[-1])
    res["peak_rss"] = peak
    return res


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"dmf": version("dask-mf")}  # the distribution's name; the import is dmf
    for name in ("dask", "distributed", "numpy", "numba", "scipy", "pandas"):
        out[name] = version(name)
    for name in ("scikit-surprise", "pyspark", "implicit"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    try:
        java = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30)
        out["java"] = (java.stderr.splitlines() or ["?"])[0].replace('"', "")
    except (OSError, subprocess.SubprocessError):
        out["java"] = "not found"
    return out


def _machine() -> str:
    import psutil

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = psutil.virtual_memory().total / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, {platform.platform()}"


def _fmt(v: Any, digits: int = 4) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def render(results: list[dict[str, Any]], meta: dict[str, Any], data: str) -> str:
    """The markdown section of one data set's run."""
    when = (
        f"Measured {meta['when']} by `{meta['command']}` (total {meta['wall'] / 60:.1f} min), "
        f"1-minute load average {meta['load'][0]:.1f} at the start (before this run's own "
        f"work) and {meta['load'][1]:.1f} at the end (including it): "
        + (
            "**measured under load** (other work shared the 2 cores)."
            if meta["load"][0] > 1.0
            else "no other work was running."
        )
    )
    rows = [r for r in results if r["data"] == data]
    lines = [
        f"### {DATA[data]}",
        "",
        when,
        "",
        "| task | library | method | settings | fit s | start-up s | test metric | "
        "peak RSS GB | dmf speed-up |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        res = r["result"]
        ratio = _ratio(rows, r)
        if "error" in res:
            metric, fit, start = res["error"], "", ""
        else:
            metric = f"RMSE {res['rmse']:.4f}" if "rmse" in res else f"p@10 {res['p@10']:.4f}"
            fit, start = _fmt(res["fit_s"], 2), _fmt(res.get("startup_s"), 1)
        lines.append(
            f"| {r['task']} | {r['library']} | {r['method']} | {r['settings']} | {fit} | "
            f"{start} | {metric} | {res.get('peak_rss', 0) / 1e9:.2f} | "
            f"{'' if ratio is None else f'{ratio:.1f}x'} |"
        )
    return "\n".join(lines)


def _ratio(rows: list[dict[str, Any]], r: dict[str, Any]) -> float | None:
    """A peer's fit seconds over dmf's for the same task (> 1: dmf is faster)."""
    mine = next((x for x in rows if x["task"] == r["task"] and x["library"] == "dmf"), None)
    if r["library"] == "dmf" or mine is None:
        return None
    if "fit_s" not in r["result"] or "fit_s" not in mine["result"]:
        return None
    return r["result"]["fit_s"] / max(mine["result"]["fit_s"], 1e-9)


def figures(data: dict[str, Any]) -> dict[str, str]:
    """What the pages show of ``docs/_data/peers.json`` (see ``tools/render_docs.py``)."""
    runs = data["runs"]
    meta = data["meta"]
    out = {
        "header": "\n".join(
            [
                f"- Machine: {meta['machine']}.",
                "- Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ".",
                "- `fit s`: the fit call alone. `start-up s`: Spark's JVM and session start; "
                "for dmf the one-off numba compilation on tiny data in the same process. "
                "`peak RSS`: largest resident memory of the run's process tree (JVM included). "
                "`dmf speed-up`: the peer's fit seconds / dmf's for the same task (> 1: dmf is "
                "faster). Each data set's section says when and under what load it was "
                "measured; ratios compare within one section.",
            ]
        )
    }
    ratios: dict[tuple[str, str], list[float]] = {}
    for name in DATA:
        if name not in runs:
            continue
        run = runs[name]
        out[name] = render(run["rows"], run, name)
        for r in run["rows"]:
            ratio = _ratio(run["rows"], r)
            if ratio is not None:
                ratios.setdefault((r["task"], r["library"]), []).append(ratio)
    for (task, library), values in ratios.items():
        lo, hi = min(values), max(values)
        key = f"{task}_vs_{library.split()[0].lower()}"
        out[key] = f"{lo:.1f}x" if f"{lo:.1f}" == f"{hi:.1f}" else f"{lo:.1f}-{hi:.1f}x"
        inverse = [1 / v for v in values]
        out[key + "_inverse"] = f"{min(inverse):.1f}-{max(inverse):.1f}x"
    return out


def write_json(path: Path, results: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    """Each measured data set replaces its own run in the JSON; the others are kept."""
    data = json.loads(path.read_text()) if path.exists() else {"runs": {}}
    data["meta"] = {"machine": meta["machine"], "versions": meta["versions"]}
    for name in meta["data"]:
        run = {k: meta[k] for k in ("when", "command", "load", "wall")}
        data["runs"][name] = {**run, "rows": [r for r in results if r["data"] == name]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--data", default="ml100k,ml1m,ml10m")
    p.add_argument("--libraries", default="dmf,Surprise,Spark MLlib,implicit")
    p.add_argument("--tasks", default="baseline,als,sgd,implicit")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per run")
    p.add_argument("--json", type=Path, default=JSON, help="where the results go")
    p.add_argument("--no-write", action="store_true", help="print only")
    args = p.parse_args()
    if args.child:
        library, task, params, train, test = json.loads(args.child)
        print(json.dumps(CHILDREN[library](task, params, train, test)), flush=True)
        return

    datas = [d for d in args.data.split(",") if d]
    libs = set(args.libraries.split(","))
    tasks = set(args.tasks.split(","))
    for d in datas:
        data_files(d)  # generate before any clock starts
    meta: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python tools/bench/peers.py " + " ".join(sys.argv[1:]),
        "data": datas,
        "machine": _machine(),
        "versions": _versions(),
    }
    load0, t0 = os.getloadavg()[0], time.perf_counter()
    results = []
    for data in datas:
        for task, library, method, settings, params in TASKS:
            if library not in libs or task not in tasks:
                continue
            res = run_child(library, task, params, data, args.timeout)
            row = {"data": data, "task": task, "library": library, "method": method}
            row.update({"settings": settings, "result": res})
            results.append(row)
            shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in res.items()}
            print(f"{data:7s} {task:9s} {library:12s} {shown}", flush=True)
    meta["load"] = (load0, os.getloadavg()[0])
    meta["wall"] = time.perf_counter() - t0
    for data in datas:
        print(render(results, meta, data) + "\n")
    if not args.no_write:
        write_json(args.json, results, meta)
        print(f"wrote {args.json}; now run: python tools/render_docs.py")


if __name__ == "__main__":
    main()
