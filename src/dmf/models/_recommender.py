"""The user-facing model base: fitted state plus recommend, save and fold-in.

:class:`Recommender` adds to :class:`dmf.core.FittedModel` the methods that
call the services (serving, store); every model kind subclasses it.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from dmf._errors import ParameterError
from dmf.core import FittedModel
from dmf.serving import (
    fold_in,
    recommend,
    recommend_all,
    recommend_new,
    recommend_users,
    similar,
    similar_items,
)
from dmf.store import save, to_xarray

__all__ = ["Recommender", "check_members"]


class Recommender(FittedModel):
    """Base class of dmf's models (``dmf.Baseline``, ``dmf.ALS``, ``dmf.SGD``, ...).

    Attributes
    ----------
    users_, items_ : pandas.Index
        The training data's original ids, in code order.
    global_mean_ : float
    user_bias_, item_bias_ : numpy.ndarray
    user_factors_, item_factors_ : numpy.ndarray or None
        ``(n_users, rank)`` and ``(n_items, rank)``; ``None`` for bias-only models.
    user_counts_, item_counts_ : numpy.ndarray
        Training ratings per user and item; zero means unseen (cold start).
    rating_scale_ : tuple of float
    history_ : list of dict
        One record per iteration (see :attr:`history`).

    Examples
    --------
    Every model shares this interface:

    >>> import dmf
    >>> from dmf.testing import random_ratings
    >>> model = dmf.Baseline(max_iter=2).fit(random_ratings(n_users=20, n_items=10))
    >>> isinstance(model, dmf.Recommender), model.is_fitted, model.kind
    (True, True, 'baseline')
    >>> model.user_bias_.shape, model.item_factors_ is None
    ((20,), True)
    """

    # ------------------------------------------- persistence and fold-in
    def save(
        self,
        path: Any,
        overwrite: bool = False,
        *,
        interactions: Any = None,
        titles: Any = None,
        **storage_options: Any,
    ) -> str:
        """Save the fitted model to a Zarr store: a local path or any fsspec URL.

        See :func:`dmf.store._persist.save` (crash-safe; ``overwrite=True`` to replace
        an existing store). Returns the store's URL; :func:`dmf.load` reads it.
        The store keeps the training interactions (``interactions=False``: not)
        and, when given, item ``titles``: what ``dmf serve`` needs besides the factors.

        Examples
        --------
        >>> import pandas as pd, dmf
        >>> df = pd.DataFrame({"user": [1, 2], "item": [1, 1], "rating": [3.0, 5.0]})
        >>> dmf.Baseline().fit(dmf.from_pandas(df)).save("memory://doc/m.zarr", overwrite=True)
        'memory:///doc/m.zarr'
        """

        return save(
            self,
            path,
            overwrite=overwrite,
            interactions=interactions,
            titles=titles,
            **storage_options,
        )

    def to_xarray(self, chunked: bool = False) -> Any:
        """The fitted model as an :class:`xarray.Dataset` (see :func:`dmf.store.to_xarray`).

        Examples
        --------
        >>> import pandas as pd, dmf
        >>> df = pd.DataFrame({"user": [1, 2], "item": [1, 1], "rating": [3.0, 5.0]})
        >>> dmf.Baseline().fit(dmf.from_pandas(df)).to_xarray()["user_bias"].dims
        ('user',)
        """

        return to_xarray(self, chunked=chunked)

    def fold_in(self, new_ratings: Any, *, unknown_items: str = "raise") -> FittedModel:
        """A new model with the users of ``new_ratings`` solved against the fixed items.

        See :func:`dmf.serving._foldin.fold_in`: new users are appended, known users
        get factors and biases solved from exactly the ratings given.

        Examples
        --------
        >>> import pandas as pd, dmf
        >>> df = pd.DataFrame({"user": [1, 2], "item": [1, 2], "rating": [3.0, 5.0]})
        >>> model = dmf.Baseline().fit(dmf.from_pandas(df))
        >>> new = pd.DataFrame({"user": [9], "item": [2], "rating": [5.0]})
        >>> 9 in model.fold_in(new).users_
        True
        """

        return fold_in(self, new_ratings, unknown_items=unknown_items)

    # ------------------------------------------------------ recommendation
    def recommend(
        self,
        users: Any,
        k: int = 10,
        exclude: Any = None,
        *,
        items: Any = None,
        on_unknown: str = "raise",
        cold_start: str = "baseline",
        min_support: int = 1,
    ) -> pd.DataFrame:
        """Top-k items for some users, computed in this process (no Dask graph).

        Scores are the model's predictions :math:`\\mu + b_u + b_i (+ u \\cdot v)`;
        the highest come first, equal scores by the lower item code. Items
        never seen in training are never recommended.

        Parameters
        ----------
        users : id or list of ids
            Original user ids.
        k : int
            Items per user (>= 1, at most the number of candidates: the items
            seen in training, or those of ``items=``). A user with fewer than
            ``k`` candidates left after ``exclude`` gets fewer rows.
        exclude : optional
            Items to leave out per user, matched by original id: a
            :class:`dmf.Ratings` (normally the training set; its per-user lists
            are built once by a Dask compute and cached, so later calls run on
            NumPy alone), a DataFrame with ``user`` and ``item`` columns, a
            mapping ``{user: [items]}``, or, for a single user, a list of item ids.
            Excluded ids the model never saw change nothing.
        items : list of ids, optional
            Rank only these candidate items (ids seen in training).
        on_unknown : {"raise", "skip"}
            Ids in ``items`` unseen in training: a :class:`dmf.UnknownIdError`
            naming how many and the first ones (default), or left out.
        cold_start : {"baseline", "raise", "skip"}
            Users unseen in training: ranked by ``mu + b_i`` (default), an
            :class:`dmf.UnknownIdError`, or left out of the result.
        min_support : int
            Leave out items with fewer training ratings than this (default 1:
            every item seen in training). Rating models (``ALS``, ``SGD``,
            ``Baseline``) rank by predicted rating, which puts items rated once
            or twice on top; ``min_support=20`` keeps the list to items people
            know. Ranking models (``ALS(implicit=True)``, ``BPR``, ``Popular``)
            need no such floor.

        Returns
        -------
        pandas.DataFrame
            Columns ``user``, ``item`` (original ids), ``score`` (float32),
            ``rank`` (1 = best), users in the order given.

        Examples
        --------
        >>> import pandas as pd, dmf
        >>> train = dmf.from_pandas(pd.DataFrame({"user": [1, 1, 2, 3], "item": [10, 20, 20, 30],
        ...                                       "rating": [5.0, 3.0, 4.0, 1.0]}))
        >>> model = dmf.Baseline(reg_user=0, reg_item=0, max_iter=1).fit(train)
        >>> model.recommend(users=[1, 2], k=2, exclude=train)  # user 1 has one candidate left
           user  item  score  rank
        0     1    30   0.75     1
        1     2    10   5.50     1
        2     2    30   1.50     2
        >>> model.recommend(users=[2], k=1, items=[20, 30], exclude=[20])
           user  item  score  rank
        0     2    30    1.5     1
        """

        return recommend(
            self,
            users,
            k,
            exclude,
            items=items,
            on_unknown=on_unknown,
            cold_start=cold_start,
            min_support=min_support,
        )

    def recommend_all(
        self, k: int = 10, exclude: Any = None, *, items: Any = None, on_unknown: str = "raise"
    ) -> Any:
        """Top-k items of every user seen in training, as a dask DataFrame.

        One ``recommend-block`` task per user block of the training data (the
        partitions); each scores its users against all items in chunks, so no
        ``n_users x n_items`` array exists. Ranking as in :meth:`recommend`.

        Parameters
        ----------
        k : int
            Items per user (>= 1, at most the number of items seen in training).
        exclude : dmf.Ratings, optional
            Items to leave out per user, matched by original id, built per block
            by a Dask graph (the whole of it is never collected).
        items : list of ids, optional
            Rank only these candidate items; ``on_unknown`` as for :meth:`recommend`.
        on_unknown : {"raise", "skip"}

        Returns
        -------
        dask.dataframe.DataFrame
            Columns ``user``, ``item``, ``score``, ``rank``; one partition per user block.

        Examples
        --------
        >>> import pandas as pd, dmf
        >>> train = dmf.from_pandas(pd.DataFrame({"user": [1, 1, 2, 3], "item": [10, 20, 20, 30],
        ...                                       "rating": [5.0, 3.0, 4.0, 1.0]}))
        >>> model = dmf.Baseline(reg_user=0, reg_item=0, max_iter=1).fit(train)
        >>> recs = model.recommend_all(k=1, exclude=train).compute()
        >>> recs["user"].tolist()
        [1, 2, 3]
        """

        return recommend_all(self, k, exclude, items=items, on_unknown=on_unknown)

    def similar_items(self, items: Any, k: int = 10) -> pd.DataFrame:
        """Items most similar to the given ones: cosine similarity of item factors.

        Only factor models have item factors; a bias-only model raises
        :class:`dmf.ParameterError`. An item is never its own neighbour; items
        never seen in training are never returned.

        Parameters
        ----------
        items : id or list of ids
            Original item ids seen in training.
        k : int
            Neighbours per item (>= 1, fewer than the items seen in training).

        Returns
        -------
        pandas.DataFrame
            Columns ``item``, ``similar_item``, ``score`` (cosine), ``rank``.

        Examples
        --------
        >>> import numpy as np, pandas as pd, dmf
        >>> train = dmf.from_pandas(pd.DataFrame({"user": [1, 1, 2], "item": [10, 20, 30],
        ...                                       "rating": [5.0, 3.0, 4.0]}))
        >>> model = dmf.Baseline().fit(train)
        >>> model.item_factors_ = np.array([[1, 0], [1, 1], [0, 1]], dtype=np.float32)
        >>> model.similar_items([10], k=2)["similar_item"].tolist()
        [20, 30]
        """

        return similar_items(self, items, k)

    def similar_users(self, users: Any, k: int = 10) -> pd.DataFrame:
        """Users most similar to the given ones: cosine similarity of user factors.

        As :meth:`similar_items` on the user side: a bias-only model raises
        :class:`dmf.ParameterError`, a user is never its own neighbour, users
        unseen in training are an :class:`dmf.UnknownIdError` and never returned.

        Parameters
        ----------
        users : id or list of ids
            Original user ids seen in training.
        k : int
            Neighbours per user (>= 1, fewer than the users seen in training).

        Returns
        -------
        pandas.DataFrame
            Columns ``user``, ``similar_user``, ``score`` (cosine), ``rank``.

        Examples
        --------
        >>> import numpy as np, pandas as pd, dmf
        >>> train = dmf.from_pandas(pd.DataFrame({"user": [1, 2, 3], "item": [10, 10, 20],
        ...                                       "rating": [5.0, 3.0, 4.0]}))
        >>> model = dmf.Baseline().fit(train)
        >>> model.user_factors_ = np.array([[1, 0], [0, 1], [1, 1]], dtype=np.float32)
        >>> model.similar_users([1], k=2)["similar_user"].tolist()
        [3, 2]
        """
        return similar(self, users, k, "user")

    def recommend_users(
        self, items: Any = None, k: int = 10, exclude: Any = None, *, on_unknown: str = "raise"
    ) -> Any:
        """Top-k users for items (items -> users, Spark's ``recommendForAllItems``).

        Blocked like :meth:`recommend_all`: one ``recommend-users-block`` task per
        block of items scores its items against every user seen in training
        (the model's score, as in :meth:`recommend`), so no ``n_items x n_users``
        array exists. Equal scores go to the lower user code.

        Parameters
        ----------
        items : list of ids, optional
            Original item ids seen in training; ``None`` (default): every one.
        k : int
            Users per item (>= 1, at most the users seen in training).
        exclude : dmf.Ratings, optional
            Pairs to leave out (normally the training set): an item is never
            recommended to a user who has it here.
        on_unknown : {"raise", "skip"}
            Ids in ``items`` unseen in training: an error naming how many and the
            first ones, or left out.

        Returns
        -------
        dask.dataframe.DataFrame
            Columns ``item``, ``user``, ``score``, ``rank``.

        Examples
        --------
        >>> import pandas as pd, dmf
        >>> train = dmf.from_pandas(pd.DataFrame({"user": [1, 1, 2, 3], "item": [10, 20, 20, 30],
        ...                                       "rating": [5.0, 3.0, 4.0, 1.0]}))
        >>> model = dmf.Baseline(reg_user=0, reg_item=0, max_iter=1).fit(train)
        >>> model.recommend_users(items=[30], k=2, exclude=train).compute()["user"].tolist()
        [2, 1]
        """
        return recommend_users(self, items, k, exclude, on_unknown=on_unknown)

    def recommend_new(
        self, history: Any, k: int = 10, *, items: Any = None, on_unknown: str = "raise"
    ) -> pd.DataFrame:
        """Top-k items for a new user known only by a list of items (no ratings, no refit).

        For implicit-feedback models (``ALS(implicit=True)``; ``Popular``): the
        history is folded in as interactions of value 1 each (an item listed
        twice counts twice) with the model's own user step, against the fixed
        item factors, in this process with NumPy (as implicit's
        ``recalculate_user``). The history's items are never recommended back.
        An **empty history** falls back to popularity: items ranked by their
        number of training interactions. Rating models raise
        :class:`dmf.ParameterError` (use :meth:`fold_in` with ratings).

        Parameters
        ----------
        history : list of ids
            Original item ids the user interacted with (may be empty).
        k : int
            Items to return (>= 1, at most the candidates).
        items : list of ids, optional
            Rank only these candidates.
        on_unknown : {"raise", "skip"}
            Ids in ``history`` or ``items`` unseen in training: an
            :class:`dmf.UnknownIdError` naming how many and the first ones, or
            left out.

        Returns
        -------
        pandas.DataFrame
            Columns ``item``, ``score`` (float32), ``rank``.

        Examples
        --------
        >>> import pandas as pd, dmf
        >>> df = pd.DataFrame({"user": [1, 1, 2, 2, 3], "item": [10, 20, 10, 20, 30]})
        >>> train = dmf.from_pandas(df, rating=None)
        >>> model = dmf.ALS(implicit=True, rank=2, max_iter=5).fit(train)
        >>> model.recommend_new([10], k=1)["item"].tolist()
        [20]
        >>> model.recommend_new([], k=2)["item"].tolist()  # popularity fallback
        [10, 20]
        """
        return recommend_new(self, history, k, items=items, on_unknown=on_unknown)


def check_members(models: Any) -> list[Recommender]:
    """The fitted dmf models of a list (for blends), checked."""
    if isinstance(models, Recommender) or not hasattr(models, "__iter__"):
        raise ParameterError(
            f"models must be a list of fitted dmf models, got {type(models).__name__}"
        )
    members = list(models)
    if not members:
        raise ParameterError("models is empty: pass at least one fitted model")
    for j, m in enumerate(members):
        if not isinstance(m, Recommender):
            raise ParameterError(f"models[{j}] is a {type(m).__name__}, not a dmf model")
        m._check_fitted()
    return members
