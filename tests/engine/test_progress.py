"""Progress display, fit sessions (dashboard link, close on error) and performance reports."""

from __future__ import annotations

import io
import pickle

import pytest

import dmf
from dmf.engine import _progress as _progress
from dmf.engine._progress import Progress, fit_session, format_entry, performance_report
from dmf.testing import random_ratings


class _Fake(dmf.Recommender):
    """A model whose fit records a few iterations, optionally failing part-way."""

    kind = "fake"

    def __init__(self, max_iter: int = 3, fail_at: int = 0, verbose: bool = True) -> None:
        self.max_iter = max_iter
        self.fail_at = fail_at
        self.verbose = verbose

    def fit(self, ratings):
        self._set_training_state(ratings)
        for it in range(1, self.max_iter + 1):
            if it == self.fail_at:
                raise dmf.ConvergenceError(f"diverged at iteration {it}")
            # a model being shipped to Dask mid-fit must stay picklable
            pickle.dumps(self)
            self._record(self.verbose, iteration=it, loss=1.0 / it, seconds=0.01)
        self.user_bias_ = self.item_bias_ = None
        return self


def test_format_entry_orders_step_metrics_time():
    text = format_entry({"loss": 0.5, "iteration": 2, "seconds": 0.1, "elapsed": 0.2}, total=4)
    assert text == "iteration 2/4  loss 0.5  [0.1 s/it, 0.2 s]"
    assert format_entry({"epoch": 1, "lr": 0.01}, timing=False) == "epoch 1  lr 0.01"


def test_lines_mode_prints_one_line_per_update():
    out = io.StringIO()
    with Progress("als", total=3, verbose="lines", file=out) as p:
        p.update(iteration=1, loss=2.0)
        p.update(iteration=2, loss=1.0, val_rmse=0.95)
    lines = out.getvalue().splitlines()
    assert lines == [
        "[dmf als] iteration 1/3  loss 2",
        "[dmf als] iteration 2/3  loss 1  val_rmse 0.95",
    ]


def test_bar_mode_uses_tqdm_and_shows_metrics():
    out = io.StringIO()
    p = Progress("sgd", total=2, verbose="bar", file=out)
    p.update(epoch=1, loss=0.75)
    p.update(epoch=2, loss=0.5)
    p.close()
    p.close()  # idempotent
    text = out.getvalue()
    assert "dmf sgd" in text and "2/2" in text and "loss 0.5" in text


def test_bar_starts_at_zero_before_the_first_step():
    out = io.StringIO()
    p = Progress("als", total=3, verbose="bar", file=out)
    p.start(delay=0)
    assert "0/3" in out.getvalue()
    p.close()
    lines = io.StringIO()
    Progress("als", total=3, verbose="lines", file=lines).start(delay=0)
    assert lines.getvalue() == ""


def test_verbose_false_is_silent_and_bad_mode_is_an_error(capsys):
    p = Progress("als", total=2, verbose=False)
    p.update(iteration=1, loss=1.0)
    assert p.mode == "off" and not p.enabled and p.n == 1
    assert capsys.readouterr().err == ""
    with pytest.raises(dmf.ParameterError, match="verbose='loud'"):
        Progress("als", verbose="loud")


def test_env_overrides_mode(monkeypatch):
    monkeypatch.setenv("DMF_PROGRESS", "off")
    assert Progress("als", verbose=True).mode == "off"
    monkeypatch.setenv("DMF_PROGRESS", "nope")
    with pytest.raises(dmf.ParameterError, match="DMF_PROGRESS"):
        Progress("als", verbose=True)


def test_fit_prints_progress_per_iteration(capsys):
    r = random_ratings(n_users=20, n_items=10)
    model = dmf.Baseline(max_iter=3, verbose=True).fit(r)
    err = capsys.readouterr().err.splitlines()
    assert [line.split("  ")[0] for line in err] == [
        f"[dmf baseline] iteration {i}/3" for i in (1, 2, 3)
    ]
    assert len(model.history) == 3
    dmf.Baseline(max_iter=2).fit(r)
    assert capsys.readouterr().err == ""


def test_session_closes_progress_on_error_and_keeps_model_picklable(capsys):
    r = random_ratings(n_users=20, n_items=10)
    model = _Fake(max_iter=4, fail_at=3)
    with pytest.raises(dmf.ConvergenceError):
        model.fit(r)
    assert model not in _progress._SESSIONS  # nothing left behind
    assert "iteration 2/4" in capsys.readouterr().err
    _Fake(max_iter=2).fit(r)
    assert model not in _progress._SESSIONS


def test_session_is_reentrant():
    m = _Fake()
    with fit_session(m, verbose=False), fit_session(m, verbose=False):
        assert _progress._SESSIONS[m].depth == 2
    assert m not in _progress._SESSIONS


def test_fit_keeps_signature_and_doc():
    import inspect

    want = ["self", "ratings", "validation", "checkpoint", "checkpoint_every", "resume"]
    assert list(inspect.signature(dmf.Baseline.fit).parameters) == want
    assert dmf.Baseline.fit.__doc__.startswith("Fit the biases")


def test_dashboard_link_printed_once_per_fit(client, capsys):
    r = random_ratings(n_users=20, n_items=10)
    with client.as_current():
        dmf.Baseline(max_iter=2, verbose=True).fit(r)
    err = capsys.readouterr().err
    assert err.count("Dask dashboard: http") == 1
    assert err.count("[dmf baseline] iteration") == 2


def test_report_local_profile(tmp_path):
    r = random_ratings(n_users=20, n_items=10)
    path = tmp_path / "fit.html"
    dmf.fit(r, method="baseline", max_iter=2, report=path)
    assert path.stat().st_size > 1000
    assert "<html" in path.read_text().lower()


def test_report_distributed(client, tmp_path):
    r = random_ratings(n_users=20, n_items=10)
    path = tmp_path / "fit.html"
    with client.as_current():
        dmf.fit(r, method="baseline", max_iter=2, report=str(path))
    text = path.read_text()
    assert "bias-items" in text or "bias-users" in text  # the task prefixes show in the report


def test_report_bad_paths(tmp_path):
    with pytest.raises(dmf.ParameterError, match="html"), performance_report(tmp_path / "x.txt"):
        pass
    with (
        pytest.raises(dmf.ParameterError, match="does not exist"),
        performance_report(tmp_path / "no" / "x.html"),
    ):
        pass
