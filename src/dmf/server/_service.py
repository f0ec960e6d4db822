"""The serving core, without HTTP: ids in and out, top-k, fold-in of users' histories.

A :class:`Service` holds a fitted model (read from a Zarr store), the users'
histories (:class:`~dmf.server._history.Histories`) and, for every user whose
history changed through events, a user vector solved by ``model.fold_in``
from the user's *full* history against the fixed item factors, the same
solution a refit of that user alone gives. Input problems raise
:class:`ApiError` with the HTTP status and a message naming the problem.
"""

from __future__ import annotations

import copy
import math
import numbers
import threading
from typing import Any

import numpy as np
import pandas as pd

import dmf
from dmf.server._foldin import Folder
from dmf.server._history import Histories
from dmf.server._scoring import Scorer, top_k

__all__ = ["ApiError", "Service"]

#: Items one event or one anonymous history may carry.
MAX_EVENT_ITEMS = 10_000


class ApiError(Exception):
    """A request the service refuses: ``status`` (4xx) and a message naming the problem.

    Examples
    --------
    >>> from dmf.server import ApiError
    >>> ApiError(404, "user 7 is unknown").status
    404
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _first(values: Any, limit: int = 5) -> str:
    return ", ".join(repr(v) for v in list(values)[:limit])


class Service:
    """Recommendations, similar items and event fold-in over one fitted model.

    Parameters
    ----------
    model : dmf model
        A fitted factor model or baseline (anything with user and item biases).
    histories : Histories, optional
        Users' training interactions (for exclusion and full-history fold-in).
    shards : int
        Parts the item rows are cut into and scored on parallel threads.
    max_k : int
        Largest ``k`` a request may ask for.
    titles : dict, optional
        ``{item code: title}`` shown with the items.
    index : {"exact", "ann"}
        Exact scoring of every item, or an approximate inverted-file index
        (faiss, the ``ann`` extra; see :mod:`dmf.server._ann`).
    nprobe : int
        Lists the approximate index scans per query.

    Examples
    --------
    >>> import dmf
    >>> from dmf.server import Service
    >>> train = dmf.testing.random_ratings(n_users=20, n_items=15, seed=0)
    >>> service = Service(dmf.ALS(rank=3, max_iter=2).fit(train))
    >>> len(service.recommend(user=1, k=4))
    4
    """

    def __init__(
        self,
        model: Any,
        histories: Histories | None = None,
        *,
        shards: int = 1,
        max_k: int = 1000,
        titles: dict[Any, str] | None = None,
        index: str = "exact",
        nprobe: int = 32,
    ) -> None:
        if not isinstance(model, dmf.Recommender) or getattr(model, "item_bias_", None) is None:
            raise dmf.ParameterError(
                f"dmf serve needs a fitted factor or baseline model, got {type(model).__name__}"
            )
        self.model = model
        self.users: pd.Index = model.users_
        self.items: pd.Index = model.items_
        # pandas builds an index's hash table lazily, not thread-safely, and a snapshot
        # thread looks users up beside the event loop: build both tables now, once.
        self.users.get_indexer(self.users[:1])
        self.items.get_indexer(self.items[:1])
        self.item_values = self.items.to_numpy()
        self.int_users = self.users.dtype.kind in "iu"
        self.int_items = self.items.dtype.kind in "iu"
        self.user_counts = np.asarray(model.user_counts_)
        self.allowed = np.asarray(model.item_counts_) > 0
        self.n_allowed = int(self.allowed.sum())
        self.max_k = int(max_k)
        self.mu = float(model.global_mean_)
        self.U = getattr(model, "user_factors_", None)
        self.bu = np.asarray(model.user_bias_)
        V = getattr(model, "item_factors_", None)
        r = 0 if V is None else V.shape[1]
        aug = np.empty((len(self.items), r + 2), dtype=np.float32)
        if V is not None:
            aug[:, :r] = V
        aug[:, r] = 1.0
        aug[:, r + 1] = model.item_bias_
        self.rank = r
        if index == "ann":  # faiss is imported only then
            from dmf.server._ann import AnnScorer

            self.scorer: Scorer = AnnScorer(aug, self.allowed, nprobe=nprobe)
        elif index == "exact":
            self.scorer = Scorer(aug, self.allowed, shards)
        else:
            raise dmf.ParameterError(f"index={index!r} is not allowed: 'exact' or 'ann'")
        self.index = index
        self.histories = histories or Histories(len(self.users))
        self.vectors: dict[Any, np.ndarray] = {}
        self.fold_lock = threading.Lock()
        self.implicit = bool(model.get_params().get("implicit", False))
        _lo, hi = (float(v) for v in model.rating_scale_)
        self.default_weight = 1.0 if self.implicit or not math.isfinite(hi) else hi
        self.titles = titles or {}
        self.folder = Folder(model)
        if len(model.items_):  # compile the user step now, not inside the first event
            self.folder.fold([(np.zeros(1, np.int32), np.full(1, self.default_weight, np.float32))])
        self._unit: np.ndarray | None = None

    # ----------------------------------------------------------------- ids
    def parse_user(self, raw: Any, *, text: bool = False) -> Any:
        """A user id of the model's id type (``text``: it came from a query string)."""
        return self._parse_id(raw, self.int_users, "user", text)

    @staticmethod
    def _parse_id(raw: Any, integer: bool, what: str, text: bool) -> Any:
        if integer:
            if text and isinstance(raw, str):
                try:
                    return int(raw)
                except ValueError:
                    pass
            elif isinstance(raw, numbers.Integral) and not isinstance(raw, bool):
                return int(raw)
            raise ApiError(422, f"{what} id {raw!r} is not an integer: this model's ids are")
        if isinstance(raw, str) and raw:
            return raw
        raise ApiError(422, f"{what} id {raw!r} is not a non-empty string: this model's ids are")

    def item_codes(self, raw: Any, what: str = "items", *, text: bool = False) -> np.ndarray:
        """Model codes of a list of item ids, every one seen in training (else 422)."""
        if not isinstance(raw, list) or not raw:
            raise ApiError(422, f"{what} must be a non-empty list of item ids, got {raw!r}")
        if len(raw) > MAX_EVENT_ITEMS:
            raise ApiError(413, f"{what} has {len(raw)} ids; at most {MAX_EVENT_ITEMS} allowed")
        ids = [self._parse_id(v, self.int_items, "item", text) for v in raw]
        codes = self.items.get_indexer(pd.Index(ids)).astype(np.int64)
        known = codes >= 0
        known[known] = self.allowed[codes[known]]
        if not known.all():
            bad = [v for v, ok in zip(ids, known, strict=True) if not ok]
            raise ApiError(
                422, f"{len(bad)} item id(s) the model never saw in training: {_first(bad)}"
            )
        return codes

    def user_code(self, user: Any) -> int:
        """The model's code of a user seen in training, else -1."""
        try:
            code = self.users.get_loc(user)
        except (KeyError, TypeError):
            return -1
        if not isinstance(code, (int, np.integer)) or self.user_counts[code] == 0:
            return -1
        return int(code)

    def check_k(self, raw: Any, *, text: bool = False) -> int:
        if text and isinstance(raw, str):
            try:
                raw = int(raw)
            except ValueError:
                pass
        ok = isinstance(raw, numbers.Integral) and not isinstance(raw, bool)
        limit = min(self.max_k, self.n_allowed)
        if not ok or not 1 <= raw <= limit:
            raise ApiError(422, f"k={raw!r} is not allowed: k must be an integer in [1, {limit}]")
        return int(raw)

    # ------------------------------------------------------------ vectors
    def _base_vector(self, code: int) -> np.ndarray:
        vec = np.empty(self.rank + 2, np.float32)
        if self.U is not None:
            vec[: self.rank] = self.U[code]
        vec[self.rank] = self.mu + self.bu[code]
        vec[self.rank + 1] = 1.0
        return vec

    def fold(self, histories: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """Augmented user vectors solved from each full history (see :mod:`._foldin`)."""
        try:
            with self.fold_lock:
                return self.folder.fold(histories)
        except dmf.DMFError as e:
            raise ApiError(422, str(e)) from e

    def vector(self, user: Any) -> tuple[np.ndarray, np.ndarray] | None:
        """``(augmented vector, seen item codes)`` of a user, or None if unknown."""
        code = self.user_code(user)
        vec = self.vectors.get(user)
        if vec is None:
            if code < 0:
                return None
            vec = self._base_vector(code)
        return vec, self.histories.get(user, code)[0]

    def weights(self, raw: Any, n: int) -> np.ndarray:
        if raw is None:
            return np.full(n, self.default_weight, np.float32)
        ok = isinstance(raw, list) and len(raw) == n
        ok = ok and all(
            isinstance(w, numbers.Real) and not isinstance(w, bool) and math.isfinite(w)
            for w in raw
        )
        if not ok:
            raise ApiError(422, f"weights must be a list of {n} finite numbers, one per item")
        return np.asarray(raw, dtype=np.float32)

    # ------------------------------------------------------------ answers
    def answer(self, codes: np.ndarray, scores: np.ndarray) -> list[dict[str, Any]]:
        ids = self.item_values[codes].tolist()
        out = [{"item": i, "score": float(s)} for i, s in zip(ids, scores.tolist(), strict=True)]
        if self.titles:
            for row, c in zip(out, codes.tolist(), strict=True):
                title = self.titles.get(c)
                if title is not None:
                    row["title"] = title
        return out

    def query(self, user: Any, exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``(augmented vector, items to leave out)`` of a user; 404 if unknown."""
        found = self.vector(user)
        if found is None:
            raise ApiError(
                404, f"user {user!r} is unknown: not in the model's training data and no events"
            )
        vec, seen = found
        return vec, (seen if exclude_seen else seen[:0])

    def recommend(
        self, user: Any, k: int, candidates: np.ndarray | None = None, exclude_seen: bool = True
    ) -> list[dict[str, Any]]:
        vec, seen = self.query(user, exclude_seen)
        return self.answer(*self.scorer.recommend(vec, k, seen, candidates))

    def anonymous(self, codes: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(augmented vector, sorted history)`` folded in from an anonymous history."""
        order = np.argsort(codes)
        codes, weights = codes[order], weights[order]
        if (np.diff(codes) == 0).any():
            raise ApiError(422, "items repeats an item id: list each item once")
        return self.fold([(codes, weights)])[0], codes

    def popular(self, k: int) -> list[dict[str, Any]]:
        """Items by training interactions, most first (what a new user starts from)."""
        counts = np.asarray(self.model.item_counts_, dtype=np.float32)
        scores = np.where(self.allowed, counts, -np.inf)
        return self.answer(*top_k(scores, np.arange(len(scores), dtype=np.int64), k))

    def similar_items(self, item: Any, k: int) -> list[dict[str, Any]]:
        """Most similar items by cosine of item factors, as ``model.similar_items`` ranks."""
        V = getattr(self.model, "item_factors_", None)
        if V is None:
            raise ApiError(422, "this model has no item factors: similar items need a factor model")
        limit = min(self.max_k, self.n_allowed - 1)
        if k > limit:
            raise ApiError(422, f"k={k} is not allowed: k must be an integer in [1, {limit}]")
        code = int(self.item_codes([item], "item")[0])
        if self._unit is None:
            f = np.asarray(V, dtype=np.float32)
            norms = np.linalg.norm(f, axis=1, keepdims=True)
            self._unit = np.divide(f, norms, out=np.zeros_like(f), where=norms > 0)
        sims = self._unit @ self._unit[code]
        sims[~self.allowed] = -np.inf
        sims[code] = -np.inf  # an item is not its own neighbour
        return self.answer(*top_k(sims, np.arange(len(sims), dtype=np.int64), k))

    # -------------------------------------------------------------- events
    def prepare(
        self, user: Any, codes: np.ndarray, weights: np.ndarray
    ) -> tuple[Any, tuple[np.ndarray, np.ndarray], np.ndarray]:
        """The user's new full history and its folded vector (nothing changed yet)."""
        if len(np.unique(codes)) < len(codes):
            raise ApiError(422, "items repeats an item id: list each item once per event")
        old = self.histories.get(user, self.user_code(user))
        history = Histories.merge(old, codes, weights)
        return user, history, self.fold([history])[0]

    def commit(self, user: Any, history: tuple[np.ndarray, np.ndarray], vec: np.ndarray) -> None:
        self.histories.changed[user] = history
        self.vectors[user] = vec

    def apply_events(self, events: list[dict[str, Any]]) -> None:
        """Replay logged events: histories merged in order, each user folded once."""
        for e in events:
            user = e["user"]
            codes = self.items.get_indexer(pd.Index(e["items"])).astype(np.int64)
            if (codes < 0).any():
                raise dmf.StoreError(
                    f"logged event {e['seq']} names items the model does not know "
                    f"({_first(np.asarray(e['items'], dtype=object)[codes < 0])})"
                )
            old = self.histories.get(user, self.user_code(user))
            weights = np.asarray(e["weights"], np.float32)
            self.histories.changed[user] = Histories.merge(old, codes, weights)
        users = list(dict.fromkeys(e["user"] for e in events))
        self.refold(users)

    def refold(self, users: list[Any]) -> None:
        """Fold in the current histories of ``users`` (in batches)."""
        for a in range(0, len(users), 4096):
            part = users[a : a + 4096]
            vecs = self.fold([self.histories.changed[u] for u in part])
            self.vectors.update(zip(part, vecs, strict=True))

    def snapshot_model(
        self,
        changed: dict[Any, tuple[np.ndarray, np.ndarray]],
        vectors: dict[Any, np.ndarray],
    ) -> Any:
        """A copy of the model holding the served vectors of the ``changed`` users.

        Known users' rows are replaced, new users appended (as ``model.fold_in``
        lays them out); ``user_counts_`` becomes each history's length. The
        vectors are the ones being served, so a restart from the snapshot
        answers exactly as before.
        """
        users = list(changed)
        rows = np.array([self._row(u) for u in users], dtype=np.int64)
        fresh = rows < 0
        n_old, n_new = len(self.users), int(fresh.sum())
        rows[fresh] = n_old + np.arange(n_new)
        vecs = np.array(
            [
                vectors[u] if u in vectors else self._base_vector(r)
                for u, r in zip(users, rows, strict=True)
            ],
            dtype=np.float64,
        ).reshape(len(users), self.rank + 2)
        m = self.model
        new = copy.copy(m)
        for name in ("_rec_cache", "_fold_ids", "_fold_grow"):
            new.__dict__.pop(name, None)
        bias = np.concatenate([self.bu, np.zeros(n_new, self.bu.dtype)])
        bias[rows] = vecs[:, self.rank] - self.mu
        counts = np.concatenate([self.user_counts, np.zeros(n_new, self.user_counts.dtype)])
        counts[rows] = [len(changed[u][0]) for u in users]
        if self.U is not None:
            factors = np.concatenate([self.U, np.zeros((n_new, self.rank), self.U.dtype)])
            factors[rows] = vecs[:, : self.rank]
            new.user_factors_ = factors
        added = [u for u, f in zip(users, fresh, strict=True) if f]
        new.users_ = self.users.append(pd.Index(added, dtype=self.users.dtype))
        new.user_bias_, new.user_counts_ = bias, counts
        return new

    def extras(self) -> dict[str, Any]:
        """What a snapshot store keeps besides the model: training interactions, titles."""
        h = self.histories
        inter = (h.indptr, h.codes, h.weights) if h.has_training else False
        titles = None
        if self.titles:
            codes = list(self.titles)
            titles = pd.Series(list(self.titles.values()), index=self.items[codes])
        return {"interactions": inter, "titles": titles}

    def _row(self, user: Any) -> int:
        """The user's row in the model (seen in training or not), else -1."""
        try:
            code = self.users.get_loc(user)
        except (KeyError, TypeError):
            return -1
        return int(code) if isinstance(code, (int, np.integer)) else -1

    def close(self) -> None:
        self.scorer.close()
