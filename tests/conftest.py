"""Shared fixtures: MovieLens 100K from $DMF_DATA, and a real 2-worker LocalCluster."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from dmf.testing import data_home

if "DMF_DATA" not in os.environ:
    # Running from a checkout beside shared/: use its read-only copy of MovieLens.
    _guess = Path(__file__).resolve().parents[2] / "shared" / "data"
    if _guess.is_dir():
        os.environ["DMF_DATA"] = str(_guess)


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    home = data_home()
    if home is None or not (home / "ml-100k" / "u.data").exists():
        pytest.skip("MovieLens 100K not found: set DMF_DATA to a folder holding ml-100k/")
    return home / "ml-100k"


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", names=["user", "item", "rating", "timestamp"])


@pytest.fixture(scope="session")
def u1_frames(ml100k_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The official u1.base / u1.test split as DataFrames."""
    return _read(ml100k_dir / "u1.base"), _read(ml100k_dir / "u1.test")


@pytest.fixture(scope="session")
def u1(ml100k_dir: Path):
    """The official u1 split as (train, test) Ratings sharing id maps."""
    import dmf

    return dmf.datasets.movielens("100k", split="u1", data_home=ml100k_dir.parent)


@pytest.fixture(scope="session")
def client():
    """A real multi-process LocalCluster (2 workers, 1 thread each); current only where used.

    Not entered with ``as_current`` here: a context entered inside a generator
    fixture stays active for every later test, which would silently move the
    whole rest of the session onto the cluster. Tests use ``with client.as_current():``.
    """
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            worker_class="distributed.Nanny",
        ) as cluster,
        Client(cluster, set_as_default=False) as c,
    ):
        yield c


def pytest_collection_modifyitems(config, items):
    # whole-project checks (docs, notebooks, asv, layers, communication) carry one marker
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)
