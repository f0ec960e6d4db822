"""Building Ratings from pandas, Dask, CSV and Parquet: cleaning policies and every bad input."""

from __future__ import annotations

import re

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import dmf
from dmf.testing import random_frame


def frame(**cols):
    base = {"user": [1, 1, 2, 3, 3], "item": [10, 20, 10, 20, 30], "rating": [1.0, 2, 3, 4, 5]}
    base.update(cols)
    return pd.DataFrame(base)


def names_count(exc: pytest.ExceptionInfo, n: int) -> None:
    assert re.search(rf"\b{n}\b", str(exc.value)), str(exc.value)


# ------------------------------------------------------------------ invalid rows
def test_missing_user_id_raises_with_count():
    with pytest.raises(dmf.RatingsError, match="missing user id") as e:
        dmf.from_pandas(frame(user=[1, None, 2, None, 3]))
    names_count(e, 2)
    assert "2 of 5 rows" in str(e.value) and "row 1" in str(e.value)


def test_missing_item_id_raises_with_count():
    with pytest.raises(dmf.RatingsError, match="missing item id") as e:
        dmf.from_pandas(frame(item=[10, 20, None, 20, 30]))
    assert "1 of 5 rows" in str(e.value) and "row 2" in str(e.value)


def test_nan_rating_raises_with_count():
    with pytest.raises(dmf.RatingsError, match="NaN") as e:
        dmf.from_pandas(frame(rating=[1.0, np.nan, np.nan, np.nan, 5]))
    assert "3 of 5 rows" in str(e.value)


def test_inf_rating_raises_with_count():
    with pytest.raises(dmf.RatingsError, match="infinite") as e:
        dmf.from_pandas(frame(rating=[1.0, np.inf, 3, -np.inf, 5]))
    assert "2 of 5 rows" in str(e.value)


def test_missing_timestamp_raises_with_count():
    with pytest.raises(dmf.RatingsError, match="missing timestamp") as e:
        dmf.from_pandas(frame(ts=[1.0, 2, np.nan, 4, 5]), timestamp="ts")
    assert "1 of 5 rows" in str(e.value)


def test_on_invalid_drop_records_count():
    r = dmf.from_pandas(frame(rating=[1.0, np.nan, 3, np.inf, 5]), on_invalid="drop")
    assert r.nnz == 3
    assert r.report["invalid_dropped"] == 2
    assert r.report["rows_read"] == 5
    assert sum(r.report["invalid_reasons"].values()) == 2


def test_all_rows_invalid_dropped_is_an_error():
    with pytest.raises(dmf.RatingsError, match="all 5 rows are invalid"):
        dmf.from_pandas(frame(rating=[np.nan] * 5), on_invalid="drop")


# ------------------------------------------------------------------- duplicates
def dup_frame():
    return pd.DataFrame(
        {
            "user": [1, 1, 1, 2, 2, 3],
            "item": [5, 5, 5, 6, 6, 7],
            "rating": [1.0, 2.0, 4.0, 3.0, 5.0, 2.0],
            "ts": [10, 30, 20, 5, 6, 1],
        }
    )


def test_duplicates_raise_names_count_and_rows():
    with pytest.raises(dmf.RatingsError, match="occur more than once") as e:
        dmf.from_pandas(dup_frame())
    msg = str(e.value)
    assert "2 (user, item) pairs" in msg and "3 extra rows" in msg
    assert "(user=1, item=5) at rows [0, 1, 2]" in msg


@pytest.mark.parametrize(
    ("policy", "expected", "ts"),
    [
        ("last", [4.0, 5.0, 2.0], [20, 6, 1]),
        ("mean", [7 / 3, 4.0, 2.0], [30, 6, 1]),
        ("sum", [7.0, 8.0, 2.0], [30, 6, 1]),
    ],
)
def test_duplicates_policies_merge_and_report(policy, expected, ts):
    r = dmf.from_pandas(dup_frame(), timestamp="ts", duplicates=policy)
    df = r.to_pandas()
    np.testing.assert_allclose(df["rating"], expected, rtol=1e-6)
    assert df["timestamp"].tolist() == ts
    assert r.report["duplicates_merged"] == 3
    assert r.report["duplicates_policy"] == policy


def test_duplicates_across_partitions_are_found():
    ddf = dd.from_pandas(dup_frame(), npartitions=3)
    with pytest.raises(dmf.RatingsError, match="2 \\(user, item\\) pairs"):
        dmf.from_dask(ddf)


def test_implicit_sum_gives_counts():
    df = pd.DataFrame({"user": ["a", "a", "a", "b", "b"], "item": [1, 1, 2, 1, 1]})
    r = dmf.from_pandas(df, rating=None, duplicates="sum")
    assert r.implicit
    out = r.to_pandas()
    assert out["rating"].tolist() == [2.0, 1.0, 2.0]
    assert r.report["duplicates_merged"] == 2


def test_implicit_default_raises_on_repeats():
    df = pd.DataFrame({"user": ["a", "a"], "item": [1, 1]})
    with pytest.raises(dmf.RatingsError, match="1 \\(user, item\\) pairs"):
        dmf.from_pandas(df, rating=None)


# ----------------------------------------------------------------- rating_scale
def test_rating_scale_rejects_outside_values():
    with pytest.raises(dmf.RatingsError, match="outside rating_scale") as e:
        dmf.from_pandas(frame(rating=[0.0, 2, 3, 6, 5]), rating_scale=(1, 5))
    assert "2 of 5 rows" in str(e.value)


def test_rating_scale_drop_records_count_and_is_kept():
    r = dmf.from_pandas(frame(rating=[0.0, 2, 3, 6, 5]), rating_scale=(1, 5), on_invalid="drop")
    assert r.nnz == 3 and r.report["invalid_dropped"] == 2
    assert r.rating_scale == (1.0, 5.0)


@pytest.mark.parametrize("scale", [(5, 1), (1, np.inf), "1-5", (1,)])
def test_bad_rating_scale_argument(scale):
    with pytest.raises(dmf.RatingsError, match="rating_scale"):
        dmf.from_pandas(frame(), rating_scale=scale)


# ------------------------------------------------------- columns, dtypes, types
def test_empty_input():
    with pytest.raises(dmf.RatingsError, match="0 rows"):
        dmf.from_pandas(frame().iloc[:0])


def test_empty_dask_input():
    ddf = dd.from_pandas(frame().iloc[:0], npartitions=1)
    with pytest.raises(dmf.RatingsError, match="0 rows"):
        dmf.from_dask(ddf)


def test_wrong_column_names():
    with pytest.raises(dmf.RatingsError, match="not found") as e:
        dmf.from_pandas(frame(), user="userId", rating="stars")
    assert "2 of 3 column(s)" in str(e.value) and "userId" in str(e.value)


def test_string_rating_column():
    with pytest.raises(dmf.RatingsError, match="not numbers") as e:
        dmf.from_pandas(frame(rating=["1", "x", "3", "four", "5"]))
    assert "2 of 5 values" in str(e.value) and "'x'" in str(e.value)


def test_string_rating_column_dask():
    ddf = dd.from_pandas(frame(rating=["1", "x", "3", "four", "5"]), npartitions=2)
    with pytest.raises(dmf.RatingsError, match="not numbers"):
        dmf.from_dask(ddf)


def test_mixed_id_types():
    with pytest.raises(dmf.RatingsError, match="mix types") as e:
        dmf.from_pandas(frame(user=[1, "a", 2, "b", "c"]))
    assert "2 int" in str(e.value) and "3 str" in str(e.value)


def test_boolean_timestamp_rejected():
    with pytest.raises(dmf.RatingsError, match="timestamp column"):
        dmf.from_pandas(frame(ts=[True] * 5), timestamp="ts")


@pytest.mark.parametrize("obj", [[(1, 2, 3.0)], {"user": [1]}, np.ones((3, 3))])
def test_wrong_input_type_pandas(obj):
    with pytest.raises(dmf.RatingsError, match="expected a pandas DataFrame"):
        dmf.from_pandas(obj)


def test_wrong_input_type_dask():
    with pytest.raises(dmf.RatingsError, match="expected a dask DataFrame"):
        dmf.from_dask(frame())


def test_bad_policy_names():
    with pytest.raises(dmf.ParameterError, match="duplicates"):
        dmf.from_pandas(frame(), duplicates="first")
    with pytest.raises(dmf.ParameterError, match="on_invalid"):
        dmf.from_pandas(frame(), on_invalid="ignore")


def test_same_column_twice():
    with pytest.raises(dmf.RatingsError, match="must differ"):
        dmf.from_pandas(frame(), user="user", item="user")


def test_missing_file():
    with pytest.raises(dmf.RatingsError, match="no such file"):
        dmf.read_csv("/nonexistent/ratings.csv")


# ------------------------------------------------------------ the good paths
def test_datetime_timestamps_are_seconds():
    ts = pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-03", "2020-01-04", "2020-01-05"])
    r = dmf.from_pandas(frame(ts=ts), timestamp="ts")
    out = r.to_pandas()
    assert out["timestamp"].iloc[0] == 1577836800


def test_read_csv_and_parquet_match_pandas(tmp_path):
    df = random_frame(n_users=40, n_items=25, seed=3)
    df["user"] = "u" + df["user"].astype(str)
    df.to_csv(tmp_path / "r.csv", index=False)
    df.to_parquet(tmp_path / "r.parquet")
    ref = dmf.from_pandas(df).to_scipy()
    for r in (dmf.read_csv(tmp_path / "r.csv"), dmf.read_parquet(tmp_path / "r.parquet")):
        assert (r.to_scipy() != ref).nnz == 0
        assert list(r.users) == sorted(df["user"].unique())


def test_from_dask_processes_partitions_in_separate_tasks():
    """from_dask never materialises the frame: each partition is read by its own task."""
    df = random_frame(n_users=80, n_items=30, seed=1)
    ddf = dd.from_pandas(df, npartitions=5)
    seen: list[int] = []

    def record(part: pd.DataFrame) -> pd.DataFrame:
        seen.append(len(part))
        return part

    ddf = ddf.map_partitions(record, meta=ddf._meta)
    with dask.config.set(scheduler="sync"):
        r = dmf.from_dask(ddf, chunk_nnz=200)
    # Each partition is computed once, by its own task, and none holds all rows.
    assert len(seen) == 5
    assert sum(seen) == len(df) and max(seen) < len(df)
    ref = dmf.from_pandas(df, chunk_nnz=200)
    assert (r.to_scipy() != ref.to_scipy()).nnz == 0
    assert (r.users == ref.users).all() and (r.items == ref.items).all()


def test_duplicate_rows_counted_in_input_positions_after_drops():
    df = pd.DataFrame(
        {"user": [1, 2, 1, 3, 1], "item": [5, 6, 7, 8, 7], "rating": [1.0, np.nan, 2, 3, 4]}
    )
    with pytest.raises(dmf.RatingsError, match=r"\(user=1, item=7\) at rows \[2, 4\]"):
        dmf.from_pandas(df, on_invalid="drop")


@pytest.mark.parametrize(
    ("bad", "words"),
    [([1, [2], 3], "user id is unhashable"), ([1, 2, 2**70], "user id is an integer beyond")],
)
def test_ids_no_id_map_can_hold_name_the_column_count_and_rows(bad, words):
    df = pd.DataFrame({"user": pd.Series(bad, dtype=object), "item": [1, 2, 3], "rating": 3.0})
    with pytest.raises(dmf.RatingsError, match=rf"1 of 3 rows are invalid \(1 {words}"):
        dmf.from_pandas(df)
    assert dmf.from_pandas(df, on_invalid="drop").report["invalid_dropped"] == 1


def test_folder_read_on_cluster_sends_no_large_graph(client, tmp_path):
    """A Parquet folder and CSV files read with a client: id maps merged on the workers."""
    import warnings

    rng = np.random.default_rng(3)
    n = 150_000
    frame = pd.DataFrame(
        {
            # string ids: the user map pickles to about 1 MB, which the graph used to carry
            "user": np.char.add("user-", rng.integers(0, 60_000, n).astype(str)),
            "item": rng.integers(0, 500, n),
            "rating": rng.integers(1, 6, n).astype(float),
        }
    ).drop_duplicates(["user", "item"])
    folder = tmp_path / "parts"
    folder.mkdir()
    for j, a in enumerate(range(0, len(frame), -(-len(frame) // 3))):
        part = frame.iloc[a : a + -(-len(frame) // 3)]
        part.to_parquet(folder / f"part-{j}.parquet", index=False)
        part.to_csv(tmp_path / f"part-{j}.csv", index=False)
    local = dmf.from_pandas(frame)
    want = local.to_scipy()
    with client.as_current():
        for read in (
            lambda: dmf.read_parquet(str(folder)),
            lambda: dmf.read_csv(str(tmp_path / "part-*.csv")),
        ):
            with (
                dask.config.set({"distributed.admin.large-graph-warning-threshold": "300kB"}),
                warnings.catch_warnings(),
            ):
                warnings.filterwarnings("error", message=".*[Ll]arge graph.*")
                got = read()
            assert got.users.equals(local.users) and got.items.equals(local.items)
            assert (got.to_scipy() != want).nnz == 0
