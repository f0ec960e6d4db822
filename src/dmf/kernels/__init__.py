"""Per-block kernels: numba and NumPy over one block's raw arrays, no Dask.

The layer every other builds on. Each module keeps a slow dense reference beside
its fast kernel; :mod:`dmf.testing` exposes the references.
"""
