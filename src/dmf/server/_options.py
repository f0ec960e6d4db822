"""The options of ``dmf serve``, cheap to import (the CLI builds its parser from them)."""

from __future__ import annotations

import argparse

__all__ = ["add_arguments"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``dmf serve`` (shared by the CLI and ``python -m dmf.server``)."""
    parser.add_argument("store", help="model store written by dmf fit / model.save (Zarr)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--state", help="directory for the event log and snapshots")
    parser.add_argument("--token", help="bearer token clients must send (needed off loopback)")
    parser.add_argument("--shards", type=int, default=1, help="item shards scored in parallel")
    parser.add_argument(
        "--snapshot-every", type=int, help="fold the log into a new store every N events"
    )
    parser.add_argument(
        "--interactions",
        help="CSV/Parquet of training user,item[,rating] (default: those the store keeps)",
    )
    parser.add_argument(
        "--titles", help="MovieLens item file or CSV item,title (default: the store's titles)"
    )
    parser.add_argument(
        "--index",
        choices=("exact", "ann"),
        default="exact",
        help="score every item (exact) or use an approximate index (ann: the 'ann' extra)",
    )
    parser.add_argument(
        "--nprobe", type=int, default=32, help="lists the approximate index scans per query"
    )
    parser.add_argument("--max-k", type=int, default=1000, help="largest k a request may ask")
    parser.add_argument(
        "--body-limit", type=int, default=1 << 20, help="largest request body in bytes"
    )
