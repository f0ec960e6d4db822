"""The ``dmf`` command line: demo, fit/evaluate/recommend/info round trip, bad input -> exit 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

import dmf
from dmf.cli._main import main
from dmf.testing import random_frame


@pytest.fixture(scope="module")
def csv_files(tmp_path_factory):
    """A small train/test pair of CSV files with non-default column names."""
    folder = tmp_path_factory.mktemp("cli")
    df = random_frame(n_users=40, n_items=30, density=0.4, seed=1)
    df = df.rename(columns={"user": "userId", "item": "movieId"})
    test = df.sample(frac=0.2, random_state=0)
    train = df.drop(test.index)
    paths = {"train": folder / "train.csv", "test": folder / "test.csv"}
    train.to_csv(paths["train"], index=False)
    test.to_csv(paths["test"], index=False)
    return paths


COLS = ["--user-col", "userId", "--item-col", "movieId"]


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_line_error(code, err, *words):
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for w in words:
        assert w in lines[0], lines[0]


# ------------------------------------------------------------------ demo
def test_demo_prints_rmse_table_and_top5(capsys):
    code, out, err = _run(capsys, "demo", "--data", "synthetic", "--quiet")
    assert code == 0, err
    assert "test RMSE" in out and "baseline" in out
    best = next(m for m in ("als", "sgd", "baseline") if m in dmf.METHODS)
    rating_table = out.split("ranking (")[0]
    rows = [
        ln.split() for ln in rating_table.splitlines() if ln.split()[:1] in (["baseline"], [best])
    ]
    assert {r[0] for r in rows} == {best, "baseline"}
    for r in rows:
        assert 0.3 < float(r[1]) < 1.5  # a held-out RMSE on a 1-5 scale
    assert "top 5 for user" in out
    top = out.split("top 5 for user")[1].splitlines()[2:]
    assert len(top) == 5
    assert "by implicit ALS" in out and "precision@10" in out


def test_demo_uses_movielens_when_found(capsys, ml100k_dir, monkeypatch):
    monkeypatch.setenv("DMF_DATA", str(ml100k_dir.parent))
    code, out, err = _run(capsys, "demo", "--method", "baseline", "--quiet")
    assert code == 0, err
    assert "MovieLens 100K" in out
    rmse = float(next(ln for ln in out.splitlines() if ln.startswith("baseline")).split()[1])
    assert rmse <= 0.961
    assert "(19" in out  # movie titles carry their year


def test_demo_subprocess():
    """The README's command as a separate process (MovieLens when $DMF_DATA has it: fast)."""
    env = dict(os.environ, DMF_PROGRESS="lines")
    proc = subprocess.run(
        [sys.executable, "-m", "dmf", "demo", "--method", "baseline"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "test RMSE" in proc.stdout
    assert "[dmf baseline] iteration 1/10" in proc.stderr  # progress per iteration


# ----------------------------------------------------------- round trip
def test_fit_evaluate_recommend_info_round_trip(capsys, csv_files, tmp_path):
    store = tmp_path / "model.zarr"
    code, out, err = _run(
        capsys, "fit", csv_files["train"], *COLS, "--method", "baseline", "--iterations", "3",
        "--test", csv_files["test"], "--out", store,
    )  # fmt: skip
    assert code == 0, err
    assert "rmse" in out and store.exists()
    assert "iteration 3/3" in err and "model saved" in err

    code, out, err = _run(capsys, "evaluate", store, csv_files["test"], *COLS, "--json")
    assert code == 0, err
    import json

    scores = json.loads(out)
    model = dmf.load(str(store))
    test = pd.read_csv(csv_files["test"])
    expected = dmf.evaluate(model, test, user="userId", item="movieId")
    assert scores["rmse"] == pytest.approx(expected["rmse"], rel=1e-6)

    users = ",".join(str(u) for u in model.users_[:2])
    code, out, err = _run(capsys, "recommend", store, "--users", users, "-k", "3")
    assert code == 0, err
    assert len(out.strip().splitlines()) == 1 + 2 * 3  # header + k rows per user

    recs = tmp_path / "recs.csv"
    code, out, err = _run(capsys, "recommend", store, "--all", "-k", "2", "--out", recs)
    assert code == 0, err
    assert len(pd.read_csv(recs)) == 2 * len(model.users_)
    recs = tmp_path / "recs.parquet"
    code, out, err = _run(capsys, "recommend", store, "--all", "-k", "2", "--out", recs,
                          "--exclude", csv_files["train"], *COLS)  # fmt: skip
    assert code == 0, err
    assert len(pd.read_parquet(recs)) == 2 * len(model.users_)

    code, out, err = _run(
        capsys, "evaluate", store, csv_files["test"], *COLS, "--metrics", "rmse,ndcg@5",
        "--train", csv_files["train"], "--json",
    )  # fmt: skip
    assert code == 0, err
    train = pd.read_csv(csv_files["train"])
    expected = dmf.evaluate(model, test, metrics=["rmse", "ndcg@5"], train=train,
                            user="userId", item="movieId")  # fmt: skip
    assert json.loads(out)["ndcg@5"] == pytest.approx(expected["ndcg@5"], rel=1e-6)

    code, out, err = _run(capsys, "info", store)
    assert code == 0, err
    assert "baseline" in out and "users" in out

    # a second fit to the same store needs --overwrite
    argv = ["fit", csv_files["train"], *COLS, "--method", "baseline", "--out", store, "--quiet"]
    code, _, err = _run(capsys, *argv)
    _assert_one_line_error(code, err, "--overwrite")
    code, _, err = _run(capsys, *argv, "--overwrite")
    assert code == 0, err


def test_fit_movielens_split_and_holdout(capsys, ml100k_dir, monkeypatch):
    monkeypatch.setenv("DMF_DATA", str(ml100k_dir.parent))
    code, out, err = _run(capsys, "fit", "100k:u1", "--method", "baseline", "--quiet")
    assert code == 0, err
    rmse = float(next(ln for ln in out.splitlines() if ln.startswith("rmse")).split()[1])
    assert rmse <= 0.961
    code, out, err = _run(
        capsys, "fit", "ml-100k", "--method", "baseline", "--holdout", "0.1", "--seed", "1",
        "--quiet", "--metrics", "rmse",
    )  # fmt: skip
    assert code == 0, err
    assert "rmse" in out and "mae" not in out


def test_fit_on_local_cluster_with_report(capsys, csv_files, tmp_path):
    report = tmp_path / "fit.html"
    code, _, err = _run(
        capsys, "fit", csv_files["train"], *COLS, "--method", "baseline", "--workers", "1",
        "--iterations", "2", "--report", report,
    )  # fmt: skip
    assert code == 0, err
    assert "dashboard" in err
    assert "bias-items" in report.read_text()


def test_unreachable_scheduler(capsys, csv_files):
    code, _, err = _run(capsys, "fit", csv_files["train"], *COLS, "--method", "baseline",
                        "--scheduler", "tcp://127.0.0.1:9")  # fmt: skip
    _assert_one_line_error(code, err, "tcp://127.0.0.1:9")


def test_datasets_fetch_and_list(capsys, ml100k_dir):
    code, out, err = _run(capsys, "datasets", "fetch", "ml-100k", "--data-home", ml100k_dir.parent)
    assert code == 0, err
    assert out.strip() == str(ml100k_dir)
    code, out, err = _run(capsys, "datasets", "list", "--data-home", ml100k_dir.parent)
    assert code == 0 and "100k" in out


def test_help_has_examples(capsys):
    commands = [
        "demo",
        "fit",
        "evaluate",
        "recommend",
        "info",
        "serve",
        "datasets",
        "datasets fetch",
    ]
    for cmd in [["--help"]] + [[*c.split(), "--help"] for c in commands]:
        code, out, _ = _run(capsys, *cmd)
        assert code == 0
        assert "examples:" in out, cmd


# ------------------------------------------------------------ bad input
def test_missing_data_file(capsys, tmp_path):
    code, _, err = _run(capsys, "fit", tmp_path / "nope.csv", "--method", "baseline")
    _assert_one_line_error(code, err, "nope.csv", "not found")


def test_unknown_method(capsys, csv_files):
    code, _, err = _run(capsys, "fit", csv_files["train"], *COLS, "--method", "svdpp")
    _assert_one_line_error(code, err, "svdpp", "baseline")


def test_bad_column_names(capsys, csv_files):
    code, _, err = _run(capsys, "fit", csv_files["train"], "--method", "baseline")
    _assert_one_line_error(code, err, "user")


def test_store_that_is_not_a_model(capsys, tmp_path):
    folder = tmp_path / "not-a-model.zarr"
    folder.mkdir()
    (folder / "hello.txt").write_text("hi")
    for argv in (["info", folder], ["recommend", folder, "--users", "1"]):
        code, _, err = _run(capsys, *argv)
        _assert_one_line_error(code, err, "not-a-model.zarr")
    code, _, err = _run(capsys, "info", tmp_path / "missing.zarr")
    _assert_one_line_error(code, err, "missing.zarr", "not found")


def test_bad_parameter_value(capsys, csv_files):
    code, _, err = _run(
        capsys, "fit", csv_files["train"], *COLS, "--method", "baseline", "-p", "reg_user=-1"
    )
    _assert_one_line_error(code, err, "reg_user", "-1")
    code, _, err = _run(capsys, "fit", csv_files["train"], *COLS, "--method", "baseline", "-p", "x")
    _assert_one_line_error(code, err, "NAME=VALUE")
    code, _, err = _run(capsys, "fit", csv_files["train"], *COLS, "--method", "baseline",
                        "--rank", "8")  # fmt: skip
    _assert_one_line_error(code, err, "rank")


def test_bad_metric_and_k(capsys, csv_files, tmp_path):
    store = tmp_path / "m.zarr"
    argv = ["fit", csv_files["train"], *COLS, "--method", "baseline", "--out", store, "--quiet"]
    assert main([str(a) for a in argv]) == 0
    capsys.readouterr()
    code, _, err = _run(capsys, "evaluate", store, csv_files["test"], *COLS, "--metrics", "nope")
    _assert_one_line_error(code, err, "nope")
    code, _, err = _run(capsys, "recommend", store, "--users", "1", "-k", "0")
    _assert_one_line_error(code, err, "-k")
    code, _, err = _run(capsys, "recommend", store, "--users", "a,b")
    _assert_one_line_error(code, err, "--users")


def test_usage_errors_are_one_line(capsys):
    for argv in ([], ["fit"], ["frobnicate"], ["demo", "--data", "nowhere"],
                 ["recommend", "m.zarr"]):  # fmt: skip
        code, _, err = _run(capsys, *argv)
        _assert_one_line_error(code, err, "error")


def test_unknown_dataset_name(capsys):
    code, _, err = _run(capsys, "datasets", "fetch", "2m")
    _assert_one_line_error(code, err, "2m")


def test_debug_shows_traceback(capsys, tmp_path):
    code, _, err = _run(capsys, "fit", tmp_path / "nope.csv", "--debug")
    assert code == 2
    assert "Traceback" in err and "nope.csv" in err


def test_serve_refuses_an_open_address_without_a_token(capsys, tmp_path):
    code, _, err = _run(capsys, "serve", tmp_path / "model.zarr", "--host", "0.0.0.0")
    _assert_one_line_error(code, err, "0.0.0.0", "--token")
    code, _, err = _run(capsys, "serve", tmp_path / "missing.zarr")
    _assert_one_line_error(code, err, "missing.zarr")
