"""What the two blends share: members, their training state, persistence and refitting.

:class:`dmf.Blend` (ratings) and :class:`dmf.RankBlend` (rankings) both hold a
list of fitted members and one weight each; the blend takes its id maps and
training counts from the first member, stores the members as child stores, and
can refit its members on more data while keeping the weights chosen on a
validation set (:meth:`Fusion.refit`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from dmf.data._io import to_ratings
from dmf.models._recommender import Recommender

__all__ = ["Fusion"]


class Fusion(Recommender):
    """Base of the blends: members fitted on one training set, one weight each."""

    members_: list[Recommender]
    weights_: np.ndarray

    def _adopt_members(self, members: list[Recommender], w: np.ndarray) -> Recommender:
        """Take the ids, counts and training record of ``members[0]``; returns it."""
        first = members[0]
        self.users_, self.items_ = first.users_, first.items_
        self.user_counts_ = np.asarray(first.user_counts_, dtype=np.int64)
        self.item_counts_ = np.asarray(first.item_counts_, dtype=np.int64)
        self.row_edges_ = np.asarray(getattr(first, "row_edges_", [0, len(first.users_)]))
        self.train_info_ = dict(getattr(first, "train_info_", {}))
        if not hasattr(self, "history_"):
            self.history_ = []
        self.members_ = list(members)
        self.weights_ = np.asarray(w, dtype=np.float64)
        self.user_factors_ = self.item_factors_ = None
        self.user_bias_ = np.zeros(len(self.users_), dtype=np.float32)
        self.__dict__.pop("_rec_cache", None)
        return first

    def _adopt_weights(self, members: list[Recommender]) -> None:
        """Re-adopt ``members`` with the fitted weights (after a load or a refit)."""
        raise NotImplementedError

    # ---------------------------------------------------- persistence hooks
    def _weights_variable(self) -> xr.DataArray:
        kinds = [m.kind for m in self.members_]
        return xr.DataArray(self.weights_, dims=("member",), attrs={"kinds": kinds})

    def _store_children(self) -> dict[str, Recommender]:
        return {f"member_{j}": m for j, m in enumerate(self.members_)}

    def _restore_members(self, ds: Any, read_child: Any) -> None:
        self.weights_ = np.asarray(ds["weights"].values, dtype=np.float64)
        history = self.history_
        self._adopt_weights([read_child(f"member_{j}") for j in range(len(self.weights_))])
        self.history_ = history

    # --------------------------------------------------------------- refit
    def refit(self, ratings: Any) -> Fusion:
        """A copy whose members are refitted on ``ratings``, with the same weights.

        The recipe for a blend: choose the weights with members fitted on part of
        the training data (the rest is the validation set), then refit every member
        with its own hyper-parameters on all of it. The members see more data; the
        weights stay those chosen on held-out data.

        Parameters
        ----------
        ratings : dmf.Ratings or pandas.DataFrame
            Normally the whole training set (the members' data plus the validation set).

        Returns
        -------
        Blend or RankBlend
            A new fitted blend; ``self`` is unchanged.

        Examples
        --------
        >>> import dmf
        >>> full = dmf.testing.random_ratings(n_users=50, n_items=25, seed=3)
        >>> part, held = dmf.split.by_user(full, test_size=0.2, seed=1)
        >>> small = dmf.blend([dmf.Popular().fit(part), dmf.Baseline().fit(part)], held)
        >>> more = small.refit(full)
        >>> same = bool((more.weights_ == small.weights_).all())
        >>> int(more.members_[0].user_counts_.sum()) == full.nnz, same
        (True, True)
        """
        self._check_fitted()
        ratings = to_ratings(ratings, name="ratings")
        members = [type(m)(**m.get_params()).fit(ratings) for m in self.members_]
        new = type(self)(**self.get_params())
        new.__dict__.update(
            {k: v for k, v in self.__dict__.items() if k.endswith("_") and k != "members_"}
        )
        new.history_ = list(self.history_)
        new.weights_ = self.weights_.copy()
        new._adopt_weights(members)
        return new
