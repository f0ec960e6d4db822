"""dmf ALS against Spark MLlib ALS, side by side in one run: fit time and test RMSE.

Not an asv benchmark: run it as a script (needs the ``bench`` extra: pyspark and Java)::

    python tools/bench/als_vs_spark.py                        # ML-10M shape, rank 64, 10 it
    python tools/bench/als_vs_spark.py --shape ml1m --reg 0.1

Both libraries get the same synthetic ratings (``dmf.datasets.synthetic``, seed
0), the same seeded 80/20 split, the same rank, ``reg`` (ALS-WR λ·n_u in
both: Spark's ``regParam``) and iterations. Spark runs ``local[2]`` with a
checkpoint directory (without one it overflows its stack past ~20
iterations); its session start is excluded from its fit time. dmf's model
also has biases (regularised by its default ``reg_bias``); Spark's has none.
Test RMSE is over test pairs whose user and item are in the training set,
predictions clipped to [1, 5] for both. The machine is shared: compare the
two rows of one run.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

SHAPES = {
    "ml1m": (6_040, 3_706, 1_000_000),
    "ml10m": (70_000, 10_700, 10_000_000),
}


def split(df, seed: int = 0):
    mask = np.random.default_rng(seed).random(len(df)) < 0.8
    return df[mask].reset_index(drop=True), df[~mask].reset_index(drop=True)


def run_dmf(train_df, test_df, args, solver: str) -> tuple[float, float, float]:
    """Fit time, fit time without iteration 1 (numba compilation), test RMSE."""
    import dmf

    train = dmf.from_pandas(train_df, chunk_nnz=args.chunk_nnz)
    model = dmf.ALS(rank=args.rank, reg=args.reg, max_iter=args.iters, solver=solver)
    t = time.perf_counter()
    model.fit(train)
    sec = time.perf_counter() - t
    warm = sec - float(model.history["seconds"].iloc[0])
    known = np.isin(test_df.user, train.users) & np.isin(test_df.item, train.items)
    rmse = dmf.evaluate(model, test_df[known], ["rmse"])["rmse"]
    return sec, warm, rmse


def run_spark(train_df, test_df, args) -> tuple[float, float, float]:
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.driver.memory", "8g")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    spark.sparkContext.setCheckpointDir(tempfile.mkdtemp(prefix="spark-ckpt-"))
    tr = spark.createDataFrame(train_df.astype({"user": "int32", "item": "int32"})).cache()
    te = spark.createDataFrame(test_df.astype({"user": "int32", "item": "int32"})).cache()
    tr.count(), te.count()
    als = ALS(
        rank=args.rank, maxIter=args.iters, regParam=args.reg, userCol="user", itemCol="item",
        ratingCol="rating", coldStartStrategy="drop", seed=0,
    )  # fmt: skip
    t = time.perf_counter()
    model = als.fit(tr)
    model.userFactors.count()  # make sure the fit is complete
    sec = time.perf_counter() - t
    pred = model.transform(te).withColumn("p", F.least(F.greatest("prediction", F.lit(1.0)),
                                                       F.lit(5.0)))  # fmt: skip
    rmse = pred.select(F.sqrt(F.avg((F.col("p") - F.col("rating")) ** 2))).first()[0]
    spark.stop()
    return sec, float("nan"), float(rmse)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", choices=sorted(SHAPES), default="ml10m")
    p.add_argument("--rank", type=int, default=64)
    p.add_argument("--reg", type=float, default=0.1)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--solvers", default="cg,cholesky")
    p.add_argument("--chunk-nnz", type=int, default=1_000_000)
    p.add_argument("--skip-spark", action="store_true")
    args = p.parse_args()

    import dmf

    m, n, nnz = SHAPES[args.shape]
    df = dmf.datasets.synthetic(m, n, nnz, seed=0, timestamps=False).to_pandas()
    train_df, test_df = split(df[["user", "item", "rating"]])
    print(f"{args.shape}: {len(train_df):,} train / {len(test_df):,} test ratings", flush=True)
    rows = []
    for solver in args.solvers.split(","):
        rows.append((f"dmf ALS ({solver})", *run_dmf(train_df, test_df, args, solver)))
        print(rows[-1], flush=True)
    if not args.skip_spark:
        rows.append(("Spark MLlib ALS local[2]", *run_spark(train_df, test_df, args)))
    print(f"\nrank {args.rank}, reg {args.reg}, {args.iters} iterations")
    print("| library | fit s | fit s without iteration 1 | test RMSE | Spark fit / this fit |")
    print("|---|---:|---:|---:|---:|")
    spark = rows[-1][1] if not args.skip_spark else float("nan")
    for name, sec, warm, rmse in rows:
        print(f"| {name} | {sec:.1f} | {warm:.1f} | {rmse:.4f} | {spark / sec:.1f}x |")


if __name__ == "__main__":
    main()
