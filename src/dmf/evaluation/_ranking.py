"""Ranking metrics as blocked Dask graphs, and the per-block exclusion lists they need.

One ``eval-rank-block`` task per row block of the test set scores the block's
users against every item (``model._score_users``, in chunks of a few thousand
users so no ``n_users x n_items`` array exists), masks each user's training
items, takes the top k and compares it with the user's relevant test items.
Each block returns sums and counts; one ``tree_reduce`` merges them.

The training items to mask come from ``train=``, a Ratings that may have its
own id maps and row blocks: an ``exclude-split`` task per train block cuts its
ratings by the target row blocks (mapped by original user id), an
``exclude-merge`` task per target block builds that block's CSR. When train
and target share id maps and row edges (a split of one Ratings), the split is
skipped: ``exclude-csr`` maps each block on its own.

Definitions (per user *u*, top list :math:`T_u` of length at most *k*):

- candidates :math:`C_u`: items seen in training, minus *u*'s training items
  (from ``train=``), minus items with a NaN score;
- relevant :math:`R_u`: *u*'s test items with rating ``>= relevance_threshold``
  (every test item when the threshold is ``None`` or the data are implicit)
  that are in :math:`C_u`;
- ``precision@k`` = :math:`|T_u \\cap R_u| / k`;
- ``recall@k`` = :math:`|T_u \\cap R_u| / |R_u|`;
- ``ndcg@k`` = DCG / IDCG with DCG :math:`= \\sum_{r \\le k, T_u[r] \\in R_u} 1/\\log_2(r+1)`
  (rank *r* from 1) and IDCG the same sum over ranks :math:`1..\\min(k, |R_u|)`;
- ``map@k`` = :math:`\\frac{1}{\\min(k, |R_u|)} \\sum_{r \\le k, T_u[r] \\in R_u} P@r`;
- ``mrr@k`` = 1 / rank of the first relevant item in :math:`T_u` (0 if none);
- ``hit_rate@k`` = 1 if :math:`T_u \\cap R_u \\ne \\emptyset` else 0;
- ``auc`` = fraction of (relevant, non-relevant candidate) pairs ordered
  correctly, ties counting 1/2 (users with no non-relevant candidate skipped);
- ``coverage@k`` = distinct items in the evaluated users' top-k lists divided
  by the number of items seen in training (a catalogue figure, not a mean);
- ``novelty@k``, ``diversity@k``: see :mod:`dmf.evaluation._beyond`.

Each per-user value is averaged over the evaluated users: users the model
never saw in training and users with an empty :math:`R_u` are skipped and
counted (``n_users_skipped_cold``, ``n_users_skipped_no_relevant``).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from dmf._errors import ParameterError
from dmf.data._blocks import RowBlock
from dmf.data._exclusions import _csr, empty_csr, take_rows
from dmf.evaluation._beyond import BEYOND, beyond_users
from dmf.kernels._ranking import N_RANK_STATS, RANK_STATS, rank_rows

__all__ = [
    "AT_METRICS",
    "RANKING_METRICS",
    "parse_ranking_metric",
    "rank_partial",
]

#: Ranking metrics taking a cut-off: ``"ndcg@10"``.
AT_METRICS = (*RANK_STATS, "coverage", *BEYOND)
#: Every ranking metric name (``@k`` ones listed without the cut-off).
RANKING_METRICS = (*(f"{m}@k" for m in AT_METRICS), "auc")

#: Scores computed at once inside a block task: rows x items cells (64 MB float32).
_CHUNK_CELLS = 1 << 24

_AT = re.compile(r"^([a-z_]+)@(\d+)$")


def parse_ranking_metric(name: str) -> tuple[str, int] | None:
    """``"ndcg@10"`` -> ``("ndcg", 10)``; ``"auc"`` -> ``("auc", 0)``; other names -> None.

    A known ranking name with a bad cut-off (``"ndcg@0"``, ``"ndcg"``) is an error.
    """
    if name == "auc":
        return ("auc", 0)
    m = _AT.match(name)
    if m is None:
        if name in AT_METRICS:
            raise ParameterError(f"metric {name!r} needs a cut-off k, e.g. '{name}@10'")
        base = name.split("@", 1)[0]
        if base in AT_METRICS:
            raise ParameterError(
                f"metric {name!r} has a bad cut-off: write '{base}@k' with an integer k >= 1"
            )
        return None
    base, k = m.group(1), int(m.group(2))
    if base not in AT_METRICS:
        return None
    if k <= 0:
        raise ParameterError(f"metric {name!r}: k={k} is not allowed, k must be >= 1")
    return (base, k)


# -------------------------------------------------------------- block task
def rank_partial(
    block: RowBlock,
    excl: tuple[np.ndarray, np.ndarray] | None,
    model: Any,
    umap: np.ndarray,
    imap: np.ndarray,
    ks: np.ndarray,
    threshold: float | None,
    do_auc: bool,
    per_user: bool,
    beyond: tuple[np.ndarray, np.ndarray | None] | None = None,
) -> Any:
    """Ranking sums and counts (or per-user rows) for the users of one test block.

    ``beyond``: (popularity ranks, unit item factors or None) for novelty and diversity.
    """
    n_rows = block.n_rows
    n_items = len(model.items_)
    users = umap[block.start : block.stop]
    has_test = np.bincount(block.rows, minlength=n_rows) > 0
    rel_items = imap[block.cols]
    keep = rel_items >= 0
    if threshold is not None:
        keep &= block.data >= threshold
    rel_ptr, rel_idx = _csr(block.rows[keep], rel_items[keep], n_rows)
    n_rel_raw = np.diff(rel_ptr)
    known = users >= 0
    cold = has_test & ~known
    todo = np.nonzero(known & (n_rel_raw > 0))[0]
    ex_ptr, ex_idx = empty_csr(n_rows) if excl is None else excl
    rel_ptr, rel_idx = take_rows(rel_ptr, rel_idx, todo)
    ex_ptr, ex_idx = take_rows(ex_ptr, ex_idx, todo)
    n_ks = len(ks)
    kmax = int(ks[-1])
    stats = np.empty((len(todo), n_ks, N_RANK_STATS), dtype=np.float64)
    tops = np.empty((len(todo), kmax), dtype=np.int64)
    n_rel = np.zeros(len(todo), dtype=np.int64)
    auc = np.empty(len(todo), dtype=np.float64)
    cand_ok = np.ascontiguousarray(model.item_counts_ > 0)
    step = max(1, _CHUNK_CELLS // max(1, n_items))
    for c0 in range(0, len(todo), step):
        c1 = min(len(todo), c0 + step)
        scores = np.ascontiguousarray(model._score_users(users[todo[c0:c1]]), dtype=np.float32)
        rank_rows(
            scores,
            c0,
            ks,
            cand_ok,
            ex_ptr,
            ex_idx,
            rel_ptr,
            rel_idx,
            do_auc,
            stats[c0:c1],
            tops[c0:c1],
            n_rel[c0:c1],
            auc[c0:c1],
        )
    ok = n_rel > 0
    extra_stats = (
        np.full((len(todo), n_ks, 2), np.nan) if beyond is None else beyond_users(tops, ks, *beyond)
    )
    if per_user:
        out: dict[str, Any] = {"user": block.start + todo, "n_relevant": n_rel}
        for c, k in enumerate(ks):
            for q, name in enumerate(RANK_STATS):
                out[f"{name}@{k}"] = stats[:, c, q]
            for q, name in enumerate(BEYOND):
                out[f"{name}@{k}"] = np.where(ok, extra_stats[:, c, q], np.nan)
        out["auc"] = auc
        frame = pd.DataFrame(out)
        skipped = np.nonzero(cold | (has_test & known & (n_rel_raw == 0)))[0]
        extra = pd.DataFrame({"user": block.start + skipped, "n_relevant": 0})
        return pd.concat([frame, extra], ignore_index=True) if len(extra) else frame
    cover = np.zeros((n_ks, n_items), dtype=bool)
    for c, k in enumerate(ks):
        top = tops[ok, : int(k)]
        cover[c, top[top >= 0]] = True
    auc_ok = ok & ~np.isnan(auc)
    extra_ok = extra_stats[ok]
    return {
        "sums": stats[ok].sum(axis=0),
        "beyond_sums": np.nansum(extra_ok, axis=0),
        "beyond_n": (~np.isnan(extra_ok)).sum(axis=0),
        "n_users": int(ok.sum()),
        "auc_sum": float(auc[auc_ok].sum()),
        "auc_n": int(auc_ok.sum()),
        "cover": cover,
        "skipped_cold": int(cold.sum()),
        "skipped_no_relevant": int((has_test & known).sum() - ok.sum()),
    }


def add_rank_partials(*parts: dict[str, Any]) -> dict[str, Any]:
    out = dict(parts[0])
    for p in parts[1:]:
        for k, v in p.items():
            out[k] = (out[k] | v) if k == "cover" else out[k] + v
    return out


def finish_ranking(
    total: dict[str, Any], wanted: list[tuple[str, str, int]], ks: np.ndarray, n_catalogue: int
) -> dict[str, Any]:
    """Means from the reduced sums: ``wanted`` holds (name, base, k) triples."""
    out: dict[str, Any] = {}
    n = total["n_users"]
    col = {int(k): c for c, k in enumerate(ks)}
    for name, base, k in wanted:
        if base == "auc":
            out[name] = total["auc_sum"] / total["auc_n"] if total["auc_n"] else float("nan")
        elif base == "coverage":
            out[name] = float(total["cover"][col[k]].sum() / max(1, n_catalogue))
        elif base in BEYOND:
            q = BEYOND.index(base)
            m = total["beyond_n"][col[k], q]
            out[name] = float(total["beyond_sums"][col[k], q] / m) if m else float("nan")
        else:
            q = RANK_STATS.index(base)
            out[name] = float(total["sums"][col[k], q] / n) if n else float("nan")
    out["n_users"] = int(n)
    out["n_users_skipped_cold"] = int(total["skipped_cold"])
    out["n_users_skipped_no_relevant"] = int(total["skipped_no_relevant"])
    return out
