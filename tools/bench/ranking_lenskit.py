"""LensKit's ranking models for ``ranking_peers.py``, scored over that script's split codes.

LensKit is optional and never a dmf dependency: its 2025 releases need torch and
pandas < 3, so it lives in a separate environment (see ``ranking_peers.py``).
:func:`scorers` returns ``[]`` when it does not import.

Both models train on the split's training interactions (value 1): ImplicitMF's
defaults ignore a rating column, and ItemKNN runs in implicit-feedback mode.

- **ImplicitMF** (embedding size 64, other settings LensKit's defaults): the scores
  are ``user_embeddings @ item_embeddings.T``, rows and columns mapped through the
  scorer's ``users``/``items`` vocabularies onto the split's codes.
- **ItemKNN** (20 neighbours, implicit feedback): the trained scorer is called once
  per user with the user's training items as history and every training item as a
  candidate, so its own neighbour selection (the 20 most similar items the user has)
  and aggregation give the scores; items it cannot score (NaN) rank last. The
  training items are masked by the metric, not here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

Scorer = Callable[[np.ndarray], np.ndarray]


def scorers(split: Any, seed: int = 0) -> list[tuple[str, str, str, Scorer, float]]:
    """(model, library, settings, scorer, fit seconds) of LensKit's models on ``split``.

    ``split`` is a ``ranking_peers.Split``: ``train`` (user, item in original ids),
    ``users``/``items`` (the ids in code order) and ``interactions`` (users x items CSR).
    ``seed`` seeds ImplicitMF's initial embeddings.
    """
    try:
        import lenskit
        from lenskit.als import ImplicitMFScorer
        from lenskit.data import ItemList, RecQuery, from_interactions_df
        from lenskit.knn import ItemKNNScorer
        from lenskit.training import TrainingOptions
    except ImportError:
        return []
    lib = f"LensKit {lenskit.__version__}"
    data = from_interactions_df(
        split.train[["user", "item"]].copy(),
        user_col="user",
        item_col="item",
        users=split.users,
        items=split.items,
    )

    def fit(scorer: Any) -> float:
        t0 = time.perf_counter()
        scorer.train(data, TrainingOptions(rng=seed))
        return time.perf_counter() - t0

    out = []
    mf = ImplicitMFScorer(embedding_size=64)
    secs = fit(mf)
    u_of = mf.users.numbers(split.users, missing="negative")
    i_of = mf.items.numbers(split.items, missing="negative")
    if (u_of < 0).any() or (i_of < 0).any():
        raise AssertionError("LensKit ImplicitMF lost training ids")
    U = np.asarray(mf.user_embeddings)[u_of]
    V = np.asarray(mf.item_embeddings)[i_of]
    cfg = mf.config
    settings = (
        f"embedding 64, defaults (weight {cfg.weight:g}, reg {cfg.regularization}, "
        f"{cfg.epochs} epochs); trains on interactions"
    )
    out.append(("LensKit ImplicitMF", lib, settings, lambda rows: U[rows] @ V.T, secs))

    knn = ItemKNNScorer(max_nbrs=20, feedback="implicit")
    secs = fit(knn)
    i_of = knn.items.numbers(split.items, missing="negative")
    if (i_of < 0).any():
        raise AssertionError("LensKit ItemKNN lost training ids")
    X = split.interactions.tocsr()
    candidates = ItemList(item_nums=i_of, vocabulary=knn.items)

    def knn_scores(rows: np.ndarray) -> np.ndarray:
        s = np.empty((len(rows), X.shape[1]), dtype=np.float32)
        for j, u in enumerate(rows):
            seen = X.indices[X.indptr[u] : X.indptr[u + 1]]
            query = RecQuery(
                user_id=split.users[u],
                history_items=ItemList(item_nums=i_of[seen], vocabulary=knn.items),
            )
            s[j] = knn(query, candidates).scores("numpy")
        return s

    settings = "20 neighbours, implicit feedback, defaults; trains on interactions"
    out.append(("LensKit ItemKNN", lib, settings, knn_scores, secs))
    return out
