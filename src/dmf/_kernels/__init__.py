"""Per-block numba kernels (no Dask here); each module keeps slow dense references beside them."""
