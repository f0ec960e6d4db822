"""Progress of long work: a bar (terminal, Jupyter) or one line per iteration, and reports.

Every estimator's ``fit`` runs inside a *fit session* (the base class wraps it):
the session prints the Dask dashboard link once when a ``distributed.Client``
is active and the model is verbose, and closes the progress display at the
end, also when the fit fails. Solvers do not talk to this module directly:
they call ``self._record(verbose, iteration=..., loss=..., ...)`` once per
iteration, which appends to ``model.history`` and, when ``verbose``, updates
the session's :class:`Progress`.

Where the display goes (``verbose=True``):

- a terminal (stderr is a TTY) or a Jupyter kernel: a ``tqdm`` bar with the
  iteration count, elapsed time, time per iteration and the latest metrics
  (a notebook widget when ``ipywidgets`` is installed, text otherwise);
- anything else (a log file, CI, a pipe): one line per iteration on stderr,
  e.g. ``[dmf als] iteration 3/15  loss 0.8123  val_rmse 0.9312  [0.41 s/it, 1.23 s]``.

``DMF_PROGRESS=bar|lines|off`` in the environment overrides that choice.

:func:`performance_report` is what ``dmf.fit(..., report="fit.html")`` uses:
with a ``distributed.Client`` it is ``distributed.performance_report``; on
the local threaded scheduler it is a ``dask.diagnostics`` profile (task
timeline, and CPU/memory when ``psutil`` is installed) saved as HTML. Both
need ``bokeh``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import IO, Any

import dask

from dmf._errors import ParameterError
from dmf.engine._compute import active_client

__all__ = ["MODES", "Progress", "fit_session", "format_entry", "performance_report"]

#: Display modes: a tqdm bar, one line per update, or nothing.
MODES = ("bar", "lines", "off")

#: Keys shown as the step counter rather than as a metric.
_STEP_KEYS = ("iteration", "epoch")
#: Keys the bar already shows (elapsed time, time per step).
_TIME_KEYS = ("elapsed", "seconds")


def _in_jupyter() -> bool:
    """True inside a Jupyter (IPython kernel) process."""
    if "ipykernel" not in sys.modules:
        return False
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - ipykernel always brings IPython
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def _auto_mode(file: IO[str]) -> str:
    env = os.environ.get("DMF_PROGRESS", "").strip().lower()
    if env:
        if env not in MODES:
            raise ParameterError(f"DMF_PROGRESS={env!r} is unknown; choose one of {list(MODES)}")
        return env
    if _in_jupyter():
        return "bar"
    isatty = getattr(file, "isatty", None)
    try:
        return "bar" if isatty is not None and isatty() else "lines"
    except ValueError:  # a closed stream
        return "lines"


def _make_bar(total: int | None, desc: str, file: IO[str], delay: float = 0.0) -> Any:
    """A notebook widget bar when it can be shown, else a text bar on ``file``."""
    if _in_jupyter():
        try:
            import ipywidgets  # noqa: F401
            from tqdm.notebook import tqdm as notebook_tqdm

            return notebook_tqdm(total=total, desc=desc, unit="it", leave=True, delay=delay)
        except ImportError:
            pass  # no widgets: tqdm's text bar renders fine in a notebook's stderr
    from tqdm import tqdm

    return tqdm(
        total=total, desc=desc, unit="it", leave=True, file=file, dynamic_ncols=True, delay=delay
    )


def _fmt_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.5g}"
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy scalar
        return _fmt_value(value.item())
    return str(value)


def format_entry(entry: dict[str, Any], total: int | None = None, *, timing: bool = True) -> str:
    """One history record as text: ``iteration 3/15  loss 0.8123  [0.41 s/it, 1.23 s]``.

    Parameters
    ----------
    entry : dict
        A record as passed to ``_record`` (``iteration``/``epoch``, metrics,
        ``seconds``, ``elapsed``).
    total : int, optional
        Number of steps planned, shown after the step counter.
    timing : bool
        Append the elapsed time (the bar shows it itself, so it passes False).

    Examples
    --------
    >>> entry = {"iteration": 3, "loss": 0.81234567, "seconds": 0.41, "elapsed": 1.23}
    >>> format_entry(entry, total=15)
    'iteration 3/15  loss 0.81235  [0.41 s/it, 1.23 s]'
    """
    parts = []
    for k in _STEP_KEYS:
        if k in entry:
            parts.append(f"{k} {entry[k]}" + (f"/{total}" if total else ""))
    for k, v in entry.items():
        if k in _STEP_KEYS or k in _TIME_KEYS:
            continue
        parts.append(f"{k} {_fmt_value(v)}")
    if timing:
        times = []
        if "seconds" in entry:
            times.append(f"{float(entry['seconds']):.3g} s/it")
        if "elapsed" in entry:
            times.append(f"{float(entry['elapsed']):.3g} s")
        if times:
            parts.append("[" + ", ".join(times) + "]")
    return "  ".join(parts)


class Progress:
    """Progress of one fit: one :meth:`update` per iteration with its metrics.

    Parameters
    ----------
    kind : str
        What is running, shown as ``dmf <kind>`` (``"als"``, ``"sgd"``, ...).
    total : int, optional
        Iterations planned (an early stop simply closes the bar before).
    verbose : bool or {"bar", "lines", "off"}
        ``False`` shows nothing; ``True`` picks a bar in a terminal or Jupyter
        and one line per update elsewhere; a mode name forces that mode.
    file : file-like, optional
        Where text goes (default ``sys.stderr``).

    Examples
    --------
    >>> import sys
    >>> with Progress("als", total=2, verbose="lines", file=sys.stdout) as p:
    ...     p.update(iteration=1, loss=0.5, elapsed=0.25)
    ...     p.update(iteration=2, loss=0.25, elapsed=0.5)
    [dmf als] iteration 1/2  loss 0.5  [0.25 s]
    [dmf als] iteration 2/2  loss 0.25  [0.5 s]
    >>> Progress("als", total=2, verbose=False).mode
    'off'
    """

    def __init__(
        self,
        kind: str,
        total: int | None = None,
        verbose: bool | str = True,
        file: IO[str] | None = None,
    ) -> None:
        self.kind = str(kind)
        self.total = int(total) if total else None
        self.file = file if file is not None else sys.stderr
        if isinstance(verbose, str):
            if verbose not in MODES:
                raise ParameterError(
                    f"verbose={verbose!r} is unknown; use True, False or one of {list(MODES)}"
                )
            self.mode = verbose
        else:
            self.mode = _auto_mode(self.file) if verbose else "off"
        self.n = 0
        self._bar: Any = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def enabled(self) -> bool:
        """Whether anything is shown."""
        return self.mode != "off"

    def start(self, delay: float = 0.5) -> None:
        """Show the bar (at 0) before the first step, if the work lasts over ``delay`` s.

        The first iteration of a fit can be long (kernels compile, data moves):
        the bar tells the user it has started. Lines mode prints nothing here.
        """
        with self._lock:
            if self.mode == "bar" and self._bar is None and not self._closed:
                self._bar = _make_bar(self.total, f"dmf {self.kind}", self.file, delay)

    def update(self, n: int = 1, **metrics: Any) -> None:
        """Advance by ``n`` steps and show the latest ``metrics``."""
        with self._lock:
            self.n += n
            if self.mode == "off" or self._closed:
                return
            if self.mode == "lines":
                text = format_entry(metrics, self.total)
                print(f"[dmf {self.kind}] {text}", file=self.file, flush=True)
                return
            if self._bar is None:
                self._bar = _make_bar(self.total, f"dmf {self.kind}", self.file)
            post = format_entry(
                {k: v for k, v in metrics.items() if k not in _STEP_KEYS}, timing=False
            )
            self._bar.set_postfix_str(post, refresh=False)
            self._bar.update(n)

    def close(self) -> None:
        """Finish the display (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._bar is not None:
                self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ------------------------------------------------------------ fit sessions
class _Session:
    __slots__ = ("depth", "progress")

    def __init__(self) -> None:
        self.depth = 0
        self.progress: Progress | None = None


# Kept outside the model so that nothing unpicklable (a bar holding stderr)
# ever sits on a model that Dask ships to workers in the middle of a fit.
_SESSIONS: weakref.WeakKeyDictionary[Any, _Session] = weakref.WeakKeyDictionary()
_SESSIONS_LOCK = threading.Lock()


def _total_of(model: Any) -> int | None:
    for name in ("max_iter", "n_epochs", "n_iter"):
        value = getattr(model, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def dashboard_link(client: Any) -> str | None:
    """The client's dashboard URL, or None when it has none."""
    try:
        link = client.dashboard_link
    except Exception:  # a client without a dashboard (bokeh missing)
        return None
    return str(link) if link else None


@contextlib.contextmanager
def fit_session(model: Any, verbose: Any = None) -> Iterator[None]:
    """Run one ``fit`` of ``model``: dashboard link at the start, progress closed at the end.

    Re-entrant: a ``fit`` calling another ``fit`` of the same model (a subclass
    calling ``super().fit``) shares the outer session.
    """
    with _SESSIONS_LOCK:
        session = _SESSIONS.get(model)
        if session is None:
            session = _SESSIONS[model] = _Session()
        session.depth += 1
        outer = session.depth == 1
    try:
        if outer:
            session.progress = None
            if verbose is None:
                verbose = getattr(model, "verbose", False)
            client = active_client() if verbose else None
            if client is not None:
                link = dashboard_link(client)
                if link:
                    kind = getattr(model, "kind", type(model).__name__)
                    print(f"[dmf {kind}] Dask dashboard: {link}", file=sys.stderr, flush=True)
            if verbose:
                kind = getattr(model, "kind", type(model).__name__)
                session.progress = Progress(kind, _total_of(model), verbose)
                session.progress.start()
        yield
    finally:
        with _SESSIONS_LOCK:
            session.depth -= 1
            done = session.depth == 0
            if done:
                _SESSIONS.pop(model, None)
        if done and session.progress is not None:
            session.progress.close()


def wrap_fit(fit: Callable[..., Any]) -> Callable[..., Any]:
    """``fit`` run inside :func:`fit_session` (applied by ``Recommender`` to subclasses)."""
    if getattr(fit, "_dmf_fit_session", False):
        return fit

    @functools.wraps(fit)
    def fit_in_session(self: Any, *args: Any, **kwargs: Any) -> Any:
        with fit_session(self):
            return fit(self, *args, **kwargs)

    fit_in_session._dmf_fit_session = True  # type: ignore[attr-defined]
    return fit_in_session


def record(model: Any, verbose: Any, entry: dict[str, Any]) -> None:
    """Show one history record of ``model`` (called by ``Recommender._record``)."""
    if not verbose:
        return
    with _SESSIONS_LOCK:
        session = _SESSIONS.get(model)
    kind = getattr(model, "kind", type(model).__name__)
    if session is None:  # a fit not run through a session: show the line and forget
        Progress(kind, _total_of(model), verbose).update(**entry)
        return
    if session.progress is None:
        session.progress = Progress(kind, _total_of(model), verbose)
    session.progress.update(**entry)


# ----------------------------------------------------------------- reports
@contextlib.contextmanager
def performance_report(filename: Any) -> Iterator[None]:
    """Save a Dask performance report of the work inside the block to ``filename``.

    With a ``distributed.Client``: ``distributed.performance_report`` (task
    stream, worker profiles, bandwidth). Without one (the local threaded
    scheduler): a ``dask.diagnostics`` profile (task timeline, plus CPU and
    memory when ``psutil`` is installed). ``None`` does nothing.

    Examples
    --------
    >>> with performance_report(None):
    ...     pass
    """
    if filename is None:
        yield
        return
    path = os.fspath(filename)
    if not path.endswith((".html", ".htm")):
        raise ParameterError(f"report={path!r} must name an .html file, e.g. report='fit.html'")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ParameterError(f"report={path!r}: the folder {folder!r} does not exist")
    try:
        import bokeh  # noqa: F401
    except ImportError as e:
        raise ParameterError(
            "report= needs bokeh to write the HTML report: python -m pip install bokeh"
        ) from e
    client = active_client()
    if client is not None:
        from distributed import performance_report as dperf

        with dperf(filename=path):
            yield
        return
    from dask.diagnostics import Profiler, visualize

    profilers: list[Any] = [Profiler()]
    try:
        import psutil  # noqa: F401
        from dask.diagnostics import ResourceProfiler

        profilers.append(ResourceProfiler(dt=0.25))
    except ImportError:
        pass
    with contextlib.ExitStack() as stack:
        # Small fits would skip the task graphs (dmf.engine._compute.in_process): a profile
        # is asked for to see the tasks, so build them.
        stack.enter_context(dask.config.set({"dmf.in-process": False}))
        for p in profilers:
            stack.enter_context(p)
        yield
    visualize(profilers, filename=path, show=False, save=True)
