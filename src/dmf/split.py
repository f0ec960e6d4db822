"""Train/test splits that keep id maps identical: ``random``, ``by_user``, ``temporal``, ``kfold``.

Each runs block by block on Dask (one task per row block) with
:meth:`dmf.Ratings.derive`, so train and test share the input's id maps and row
edges; each test part's ``report`` counts ratings whose user or item is unseen
in its train part.

Examples
--------
>>> import dmf
>>> r = dmf.testing.random_ratings(n_users=30, n_items=20)
>>> train, test = dmf.split.random(r, test_size=0.2, seed=0)
>>> train.nnz + test.nnz == r.nnz
True
"""

from dmf.data._split import by_user, kfold, random, temporal

__all__ = ["by_user", "kfold", "random", "temporal"]
