"""What the command line reads: MovieLens files by name, headerless files, click logs, -p."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dmf
from dmf.cli._main import main
from dmf.testing import data_home


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _value(out: str, metric: str) -> float:
    row = next(ln.split() for ln in out.splitlines() if ln.split()[:1] == [metric])
    return float(row[1])


@pytest.fixture(scope="module")
def ml100k() -> Path:
    home = data_home()
    if home is None or not (home / "ml-100k" / "u1.base").exists():
        pytest.skip("MovieLens 100K not found under $DMF_DATA/ml-100k")
    return home / "ml-100k"


def test_u_data_files_are_read_by_name_and_ranking_metrics_mask_training(ml100k):
    # a subprocess, as a user types it: headerless tab-separated u1.base needs no options
    cmd = [sys.executable, "-m", "dmf", "fit", ml100k / "u1.base", "--method", "baseline",
           "--test", ml100k / "u1.test", "--metrics", "rmse,precision@10",
           "--relevance-threshold", "4", "--quiet"]  # fmt: skip
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "80,000 ratings, 943 users" in done.stderr
    train, test = dmf.datasets.movielens("100k", split="u1")
    model = dmf.Baseline().fit(train)
    want = dmf.evaluate(model, test, ["precision@10"], train=train, relevance_threshold=4)
    assert _value(done.stdout, "precision@10") == pytest.approx(want["precision@10"], abs=1e-4)
    assert _value(done.stdout, "rmse") == pytest.approx(0.9599, abs=1e-4)


def test_headerless_file_with_escaped_tab_and_names(tmp_path, capsys):
    df = pd.DataFrame({"u": [1, 1, 2, 2, 3], "i": [1, 2, 1, 3, 2], "r": [5, 3, 4, 2, 1]})
    path = tmp_path / "plain.txt"
    df.to_csv(path, sep="\t", header=False, index=False)
    code, _, err = _run(capsys, "fit", path, "--method", "baseline", "--sep", r"\t",
                        "--no-header", "--names", "user,item,rating", "--quiet")  # fmt: skip
    assert code == 0, err
    assert "5 ratings, 3 users x 3 items" in err
    code, _, err = _run(capsys, "fit", path, "--no-header", "--quiet")
    assert code == 2 and "--names" in err


def test_click_log_with_repeats_becomes_counts_with_implicit(tmp_path, capsys):
    rng = np.random.default_rng(0)
    clicks = pd.DataFrame({"user": rng.integers(0, 30, 600), "item": rng.integers(0, 20, 600)})
    path = tmp_path / "clicks.csv"
    clicks.to_csv(path, index=False)
    code, _, err = _run(capsys, "fit", path, "--rating-col", "none", "--quiet")
    assert code == 2 and "--duplicates" in err and "--implicit" in err
    out_store = tmp_path / "m.zarr"
    code, _, err = _run(capsys, "fit", path, "--rating-col", "none", "--implicit",
                        "--iterations", "2", "--out", out_store, "--quiet")  # fmt: skip
    assert code == 0, err
    pairs = clicks.drop_duplicates().shape[0]
    assert f"{pairs:,} interactions" in err
    assert f"({600 - pairs:,} repeated events summed into counts)" in err
    assert dmf.load(str(out_store)).implicit is True
    code, out, err = _run(capsys, "similar", out_store, "--items", "3,4", "-k", "2")
    assert code == 0, err
    assert len(out.strip().splitlines()) == 1 + 4  # header, 2 neighbours for each item


def test_p_takes_hyper_parameters_only_and_column_hints_speak_cli(tmp_path, capsys):
    path = tmp_path / "r.csv"
    pd.DataFrame({"userId": [1, 2], "movieId": [1, 1], "rating": [3.0, 4.0]}).to_csv(
        path, index=False
    )
    code, _, err = _run(capsys, "fit", path, "-p", "validation=1")
    assert code == 2 and "not a hyper-parameter" in err and "rank" in err
    assert "checkpoint" not in err and "verbose" not in err
    code, _, err = _run(capsys, "fit", path, "--quiet")
    assert code == 2 and "--user-col" in err and "user=" not in err


@pytest.mark.skipif(os.name != "posix", reason="subprocess exit codes on POSIX")
def test_similar_on_a_bias_model_is_a_one_line_error(tmp_path):
    store = tmp_path / "b.zarr"
    df = pd.DataFrame({"user": [1, 2, 2], "item": [1, 1, 2], "rating": [3.0, 4.0, 5.0]})
    dmf.Baseline().fit(dmf.from_pandas(df)).save(str(store))
    done = subprocess.run([sys.executable, "-m", "dmf", "similar", str(store), "--items", "1"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 2
    assert "no item factors" in done.stderr and "Traceback" not in done.stderr


def test_info_is_a_model_card(tmp_path, capsys):
    import json

    path = tmp_path / "r.csv"
    df = pd.DataFrame({"user": [1, 1, 2, 2, 3, 3] * 3, "item": [1, 2, 1, 3, 2, 3] * 3})
    df["rating"] = np.arange(len(df)) % 5 + 1.0
    df.drop_duplicates(["user", "item"]).to_csv(path, index=False)
    store = tmp_path / "m.zarr"
    code, _, err = _run(capsys, "fit", path, "--method", "baseline", "--holdout", "0.3",
                        "--metrics", "rmse", "--out", store, "--quiet")  # fmt: skip
    assert code == 0, err
    code, out, err = _run(capsys, "info", store, "--json")
    assert code == 0, err
    card = json.loads(out)
    assert card["data"] == f"CSV {path}"
    assert card["dmf_version"] == dmf.__version__ and card["fitted_at"].endswith("+00:00")
    assert set(card["test_metrics"]) >= {"rmse", "n"} and card["training"]["nnz"] > 0


@pytest.mark.slow
def test_demo_recommends_with_the_ranking_model_items_people_know(ml100k, capsys):
    code, out, err = _run(capsys, "demo", "--data", "movielens", "--quiet")
    assert code == 0, err
    assert "precision@10" in out and "als implicit=True" in out and "popular" in out
    top = out.split("top 5 for user")[1].splitlines()[2:7]
    counts = [int(line.split()[3]) for line in top]  # rank, item, score, train ratings, title
    assert len(counts) == 5 and float(np.median(counts)) >= 50, counts
    p_als = _value(out.replace("als implicit=True", "als_implicit"), "als_implicit")
    assert p_als >= 0.330


def test_fit_keeps_movielens_titles_and_recommend_shows_them(ml100k, tmp_path, capsys):
    store = tmp_path / "m.zarr"
    code, _, err = _run(capsys, "fit", ml100k / "u1.base", "--implicit", "--iterations", "2",
                        "--out", store, "--quiet")  # fmt: skip
    assert code == 0, err
    assert "u.item" in err and "training interactions" in err
    titles = dmf.datasets.movielens_items("100k", data_home=ml100k.parent)["title"]
    code, out, err = _run(capsys, "recommend", store, "--users", "1", "-k", "3")
    assert code == 0, err
    rows = [ln for ln in out.splitlines()[1:] if ln.strip()]
    assert len(rows) == 3 and out.splitlines()[0].split()[-1] == "title"
    for row in rows:
        item = int(row.split()[1])
        assert row.endswith(titles[item])
    code, out, err = _run(capsys, "similar", store, "--items", "50", "-k", "2")
    assert code == 0, err
    assert titles[int(out.splitlines()[1].split()[1])] in out.splitlines()[1]
    # a plain CSV has no titles beside it: no title column
    plain = tmp_path / "plain.csv"
    pd.DataFrame({"user": [1, 1, 2], "item": [1, 2, 1], "rating": [4.0, 3.0, 5.0]}).to_csv(
        plain, index=False
    )
    code, _, err = _run(capsys, "fit", plain, "--method", "baseline", "--out",
                        tmp_path / "p.zarr", "--quiet")  # fmt: skip
    assert code == 0 and "titles" not in err
    code, out, _ = _run(capsys, "recommend", tmp_path / "p.zarr", "--users", "1", "-k", "1")
    assert "title" not in out.splitlines()[0]
