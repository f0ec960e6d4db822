"""Fitted models and checkpoints in Zarr, on any fsspec URL, complete or absent."""

from dmf.store._persist import load, save, to_xarray

__all__ = ["load", "save", "to_xarray"]
