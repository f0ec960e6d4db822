"""Fitted models and checkpoints in Zarr, on any fsspec URL, complete or absent."""

from dmf.store._load import load
from dmf.store._persist import save, to_xarray
from dmf.store._serving import read_interactions, read_titles

__all__ = ["load", "read_interactions", "read_titles", "save", "to_xarray"]
