"""``dmf serve``: check the options, open the state, run uvicorn."""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
import time

import dmf
from dmf._errors import check_int

__all__ = ["is_loopback", "main", "serve"]


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback address.

    Examples
    --------
    >>> from dmf.server import is_loopback
    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def serve(
    store: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    state: str | None = None,
    token: str | None = None,
    shards: int = 1,
    snapshot_every: int | None = None,
    interactions: str | None = None,
    titles: str | None = None,
    max_k: int = 1000,
    body_limit: int = 1 << 20,
    index: str = "exact",
    nprobe: int = 32,
) -> None:
    """Serve the model at ``store`` over HTTP until interrupted (see :mod:`dmf.server`).

    Parameters
    ----------
    store : str
        A model store (``model.save`` / ``dmf fit --out``), read as Zarr.
    host, port : str, int
        Where to listen; loopback by default. Any other address needs ``token``.
    state : str, optional
        Directory of the event log and snapshots (``POST /events`` needs it).
    token : str, optional
        Bearer token clients must send.
    shards : int
        Item shards scored in parallel threads.
    snapshot_every : int, optional
        Fold the log into a new model store after this many events.
    interactions : str, optional
        CSV/Parquet of the training ``user, item[, rating]``: left out of a
        user's recommendations and part of the history events are folded with.
        By default the interactions the store keeps (``model.save`` writes them).
    titles : str, optional
        Item titles (MovieLens ``u.item``/``movies.dat``/``movies.csv`` or a CSV
        ``item,title``); by default the titles the store keeps.
    max_k, body_limit : int
        Largest ``k`` and request body (bytes) accepted.
    index : {"exact", "ann"}
        Score every item, or use an approximate inverted-file index (the
        ``ann`` extra, faiss-cpu) for catalogues too large to score per request.
    nprobe : int
        Lists the approximate index scans per query (more: slower, closer to exact).

    Raises
    ------
    dmf.ParameterError
        A non-loopback ``host`` without ``token``, or an out-of-range option.
    dmf.StoreError
        The store or the state directory cannot be read.

    Examples
    --------
    >>> from dmf.server import serve
    >>> serve("model.zarr", state="serve-state", port=8000)  # doctest: +SKIP
    """
    try:
        import uvicorn
        from threadpoolctl import threadpool_limits
    except ImportError as e:  # pragma: no cover - the optional extra is missing
        raise dmf.ParameterError(
            f"dmf serve needs the 'serve' extra: pip install 'dask-mf[serve]' ({e})"
        ) from e
    from dmf.server._app import create_app
    from dmf.server._state import open_service

    check_int("port", port, 0, 65535)
    check_int("shards", shards, 1, 256)
    check_int("nprobe", nprobe, 1)
    if index not in ("exact", "ann"):
        raise dmf.ParameterError(f"index={index!r} is not allowed: 'exact' or 'ann'")
    check_int("max_k", max_k, 1)
    check_int("body_limit", body_limit, 1)
    if snapshot_every is not None:
        check_int("snapshot_every", snapshot_every, 1)
    if token is not None and not token:
        raise dmf.ParameterError("token is empty: pass a secret, or no --token on loopback")
    if token is None and not is_loopback(host):
        raise dmf.ParameterError(
            f"host={host!r} is not a loopback address: serving beyond this machine needs "
            "--token SECRET (clients send 'Authorization: Bearer SECRET')"
        )
    t0 = time.perf_counter()
    # Requests and shards are the parallelism; BLAS threads per product only oversubscribe.
    threadpool_limits(1)
    service, state_dir, replayed = open_service(
        store,
        state=state,
        interactions=interactions,
        shards=shards,
        max_k=max_k,
        titles=titles,
        index=index,
        nprobe=nprobe,
    )
    app = create_app(
        service, state_dir, token=token, body_limit=body_limit, snapshot_every=snapshot_every
    )
    print(
        f"dmf serve: {type(service.model).__name__} with {len(service.users)} users, "
        f"{service.n_allowed} items ({service.index} scoring); {replayed} event(s) replayed; "
        "ready in "
        f"{time.perf_counter() - t0:.2f} s on http://{host}:{port}",
        file=sys.stderr,
        flush=True,
    )
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    try:
        server.run()
    finally:
        service.close()
        if state_dir is not None:
            state_dir.log.close()


def main(args: argparse.Namespace) -> None:
    """Run :func:`serve` from options parsed by :func:`dmf.server._options.add_arguments`."""
    serve(
        args.store,
        host=args.host,
        port=args.port,
        state=args.state,
        token=args.token,
        shards=args.shards,
        snapshot_every=args.snapshot_every,
        interactions=args.interactions,
        titles=args.titles,
        max_k=args.max_k,
        body_limit=args.body_limit,
        index=args.index,
        nprobe=args.nprobe,
    )
