"""Fixtures of the server tests: a small model store and real server subprocesses."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

import dmf
from dmf.testing import random_ratings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``dmf serve`` (``python -m dmf serve``) in a subprocess on a free loopback port."""

    def __init__(self, store: str, *args: str, token: str | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "dmf", "serve", store, "--port", str(self.port), *args]
        if token is not None:
            cmd += ["--token", token]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.Client(base_url=self.url, timeout=30, headers=headers)
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stderr.read()}")
            try:
                if self.client.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("server did not start within 120 s")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self.client.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self.client.close()


@pytest.fixture(scope="session")
def small(tmp_path_factory):
    """``(model, train frame, store path, interactions csv)`` of an explicit ALS model."""
    root = tmp_path_factory.mktemp("serve-model")
    train = random_ratings(n_users=80, n_items=60, seed=3)
    model = dmf.ALS(rank=6, max_iter=3, seed=0).fit(train)
    store = str(root / "model.zarr")
    model.save(store)
    frame = train.to_pandas()[["user", "item", "rating"]]
    csv = str(root / "train.csv")
    frame.to_csv(csv, index=False)
    return model, frame, store, csv


@pytest.fixture(scope="module")
def server(small, tmp_path_factory):
    _, _, store, csv = small
    state = tmp_path_factory.mktemp("serve-state")
    srv = Server(store, "--state", str(state), "--interactions", csv, "--shards", "2")
    yield srv
    srv.stop()
