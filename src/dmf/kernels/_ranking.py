"""Per-block top-k and ranking-metric kernels (numba, no Dask), with dense references.

Every kernel works on one dense block of scores ``(n_rows, n_items)`` (a block
of users against the whole catalogue) plus two CSR structures over the same
rows: the items to exclude (the user's training items) and the user's relevant
test items. Items are compared by score, highest first; equal scores are
broken by the lower item code, so results are deterministic and the
references below reproduce them exactly.

Candidates of a row are the items with ``cand_ok`` true (seen in training),
minus the row's excluded items, minus items whose score is NaN.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = [
    "N_RANK_STATS",
    "rank_rows",
    "reference_rank_rows",
    "reference_score_few",
    "reference_topk",
    "score_few",
    "topk_rows",
]

#: Per (row, k) statistics written by :func:`rank_rows`, in this order.
RANK_STATS = ("precision", "recall", "ndcg", "map", "mrr", "hit_rate")
N_RANK_STATS = len(RANK_STATS)


#: Item marks inside the kernels: 0 a candidate, else blocked, except RELEVANT.
NOT_CANDIDATE, EXCLUDED, RELEVANT = 1, 2, 3


@njit(nogil=True, cache=True)
def _base_mark(cand_ok):
    mark = np.zeros(cand_ok.shape[0], dtype=np.int8)
    for j in range(cand_ok.shape[0]):
        if not cand_ok[j]:
            mark[j] = NOT_CANDIDATE
    return mark


@njit(nogil=True, cache=True)
def _worse(s_a, i_a, s_b, i_b):
    # a ranks below b: lower score, or the same score and a higher item code
    return s_a < s_b or (s_a == s_b and i_a > i_b)


@njit(nogil=True, cache=True)
def _sift_down(hs, hi, n, pos):
    # min-heap on "worse": the root is the worst kept item
    while True:
        left = 2 * pos + 1
        if left >= n:
            return
        child = left
        right = left + 1
        if right < n and _worse(hs[right], hi[right], hs[left], hi[left]):
            child = right
        if _worse(hs[child], hi[child], hs[pos], hi[pos]):
            hs[pos], hs[child] = hs[child], hs[pos]
            hi[pos], hi[child] = hi[child], hi[pos]
            pos = child
        else:
            return


@njit(nogil=True, cache=True)
def _sift_up(hs, hi, pos):
    while pos > 0:
        parent = (pos - 1) // 2
        if _worse(hs[pos], hi[pos], hs[parent], hi[parent]):
            hs[pos], hs[parent] = hs[parent], hs[pos]
            hi[pos], hi[parent] = hi[parent], hi[pos]
            pos = parent
        else:
            return


@njit(nogil=True, cache=True)
def _topk_row(row, k, mark, hs, hi):
    """Top ``k`` candidates of one score row into ``hs``/``hi``, best first; returns the count.

    ``mark[j] != 0`` blocks item ``j`` except ``mark[j] == RELEVANT`` (a
    relevant candidate). Items are scanned in increasing code order, so a
    later item displaces the worst kept one only by a strictly higher score
    (ties keep the lower code). Once ``k`` items are kept, the common case
    costs one load and one compare per item (a NaN never compares higher).
    """
    n = 0
    m = row.shape[0]
    j = 0
    while j < m and n < k:
        if mark[j] == 0 or mark[j] == RELEVANT:
            s = row[j]
            if s == s:  # NaN scores are never recommended
                hs[n] = s
                hi[n] = j
                _sift_up(hs, hi, n)
                n += 1
        j += 1
    if n == k and k > 0:
        thr = hs[0]
        while j < m:
            s = row[j]
            if s > thr and (mark[j] == 0 or mark[j] == RELEVANT):
                hs[0] = s
                hi[0] = j
                _sift_down(hs, hi, n, 0)
                thr = hs[0]
            j += 1
    # heap sort: pop the worst to the back until the front holds the best
    last = n - 1
    while last > 0:
        hs[0], hs[last] = hs[last], hs[0]
        hi[0], hi[last] = hi[last], hi[0]
        _sift_down(hs, hi, last, 0)
        last -= 1
    return n


@njit(nogil=True, cache=True)
def topk_rows(scores, row0, k, cand_ok, ex_indptr, ex_indices, out_items, out_scores, out_n):
    """Top ``k`` candidates of every row of ``scores``.

    Row ``r`` of ``scores`` is row ``row0 + r`` of the exclusion CSR. Writes item
    codes (``-1`` pads rows with fewer than ``k`` candidates), scores and counts.
    """
    n_rows = scores.shape[0]
    base = _base_mark(cand_ok)
    mark = base.copy()
    hs = np.empty(k, dtype=np.float32)
    hi = np.empty(k, dtype=np.int64)
    for r in range(n_rows):
        a, b = ex_indptr[row0 + r], ex_indptr[row0 + r + 1]
        for p in range(a, b):
            mark[ex_indices[p]] = EXCLUDED
        n = _topk_row(scores[r], k, mark, hs, hi)
        for p in range(a, b):
            mark[ex_indices[p]] = base[ex_indices[p]]
        out_n[r] = n
        for t in range(k):
            if t < n:
                out_items[r, t] = hi[t]
                out_scores[r, t] = hs[t]
            else:
                out_items[r, t] = -1
                out_scores[r, t] = np.nan


@njit(nogil=True, cache=True)
def _bucket(x, lowest, scale, n_b):
    # monotone in x (IEEE subtraction and multiplication by scale >= 0 round monotonically)
    b = int((np.float64(x) - lowest) * scale)
    return min(max(b, 0), n_b - 1)


@njit(nogil=True, cache=True)
def _auc_row(row, mark, rel_scores, n_rel, b_start, b_end):
    """AUC of one row: P(relevant scores above a non-relevant candidate), ties 1/2.

    ``rel_scores[:n_rel]`` is sorted ascending; ``mark[j] == 0`` flags a
    non-relevant candidate. The range of relevant scores is cut into
    ``8 * n_rel + 1`` equal buckets: a candidate in a bucket holding no
    relevant score is above exactly the relevant items of the higher buckets
    (bucketing is monotone), so most candidates cost a multiply and two loads;
    only those sharing a bucket with relevant scores compare with them.
    """
    m = row.shape[0]
    lowest = np.float64(rel_scores[0])
    highest = np.float64(rel_scores[n_rel - 1])
    n_b = 8 * n_rel + 1
    scale = (n_b - 1) / (highest - lowest) if highest > lowest else 0.0
    t = 0
    for b in range(n_b):
        while t < n_rel and _bucket(rel_scores[t], lowest, scale, n_b) < b:
            t += 1
        b_start[b] = t
        while t < n_rel and _bucket(rel_scores[t], lowest, scale, n_b) == b:
            t += 1
        b_end[b] = t
    above2 = 0  # twice the count: ties add 1, wins 2 (integer adds, no float latency chain)
    n_neg = 0
    for j in range(m):
        if mark[j] != 0:
            continue
        s = row[j]
        if s != s:
            continue
        n_neg += 1
        if s < lowest:
            above2 += 2 * n_rel
            continue
        if s > highest:
            continue
        b = _bucket(s, lowest, scale, n_b)
        above2 += 2 * (n_rel - b_end[b])  # relevant scores in higher buckets: all > s
        for q in range(b_start[b], b_end[b]):
            if rel_scores[q] > s:
                above2 += 2
            elif rel_scores[q] == s:
                above2 += 1
    if n_neg == 0:
        return np.nan
    return 0.5 * above2 / (n_rel * n_neg)


@njit(nogil=True, cache=True)
def rank_rows(
    scores,
    row0,
    ks,
    cand_ok,
    ex_indptr,
    ex_indices,
    rel_indptr,
    rel_indices,
    do_auc,
    out_stats,
    out_items,
    out_nrel,
    out_auc,
):
    """Ranking statistics of every row of ``scores`` at each cut-off in ``ks``.

    ``ks`` is sorted ascending; the top ``ks[-1]`` list is computed once. For
    row ``r`` (CSR row ``row0 + r``) the relevant set R is the row's relevant
    test items that are candidates. Writes ``out_nrel[r] = |R|``,
    ``out_stats[r, c, :]`` = (precision, recall, ndcg, map, mrr, hit_rate) at
    ``ks[c]`` (NaN when ``|R| == 0``), ``out_items[r, :]`` the top list
    (``-1`` padded) and ``out_auc[r]`` (NaN when not asked or undefined).
    """
    n_rows, m = scores.shape
    kmax = ks[ks.shape[0] - 1]
    base = _base_mark(cand_ok)
    mark = base.copy()
    hs = np.empty(kmax, dtype=np.float32)
    hi = np.empty(kmax, dtype=np.int64)
    rel_s = np.empty(m, dtype=np.float32)
    b_start = np.empty(8 * m + 1, dtype=np.int64)
    b_end = np.empty(8 * m + 1, dtype=np.int64)
    for r in range(n_rows):
        ea, eb = ex_indptr[row0 + r], ex_indptr[row0 + r + 1]
        ra, rb = rel_indptr[row0 + r], rel_indptr[row0 + r + 1]
        row = scores[r]
        for p in range(ea, eb):
            mark[ex_indices[p]] = EXCLUDED
        n_rel = 0
        for p in range(ra, rb):
            j = rel_indices[p]
            if mark[j] == 0 and row[j] == row[j]:
                mark[j] = RELEVANT
                rel_s[n_rel] = row[j]
                n_rel += 1
        out_nrel[r] = n_rel
        n = _topk_row(row, kmax, mark, hs, hi)
        for t in range(kmax):
            out_items[r, t] = hi[t] if t < n else -1
        if n_rel == 0:
            for c in range(ks.shape[0]):
                for q in range(out_stats.shape[2]):
                    out_stats[r, c, q] = np.nan
            out_auc[r] = np.nan
        else:
            for c in range(ks.shape[0]):
                k = ks[c]
                hits = 0
                dcg = 0.0
                ap = 0.0
                rr = 0.0
                for t in range(min(k, n)):
                    if mark[hi[t]] == RELEVANT:
                        hits += 1
                        dcg += 1.0 / math.log2(t + 2.0)
                        ap += hits / (t + 1.0)
                        if rr == 0.0:
                            rr = 1.0 / (t + 1.0)
                idcg = 0.0
                for t in range(min(k, n_rel)):
                    idcg += 1.0 / math.log2(t + 2.0)
                out_stats[r, c, 0] = hits / k
                out_stats[r, c, 1] = hits / n_rel
                out_stats[r, c, 2] = dcg / idcg
                out_stats[r, c, 3] = ap / min(k, n_rel)
                out_stats[r, c, 4] = rr
                out_stats[r, c, 5] = 1.0 if hits > 0 else 0.0
            if do_auc:
                rs = np.sort(rel_s[:n_rel])
                out_auc[r] = _auc_row(row, mark, rs, n_rel, b_start, b_end)
            else:
                out_auc[r] = np.nan
        for p in range(ea, eb):
            mark[ex_indices[p]] = base[ex_indices[p]]
        for p in range(ra, rb):
            mark[rel_indices[p]] = base[rel_indices[p]]


@njit(nogil=True, cache=True, fastmath=True)
def score_few(users, items):
    """``users @ items.T`` for a few rows, on one thread.

    For one user this is a matrix-vector product bound by reading ``items``;
    BLAS spreads it over its threads and, on a busy machine, waits for the
    slowest (measured 24 ms against 1.7 ms on one thread for 27K x 66).
    """
    n, f = users.shape
    m = items.shape[0]
    out = np.empty((n, m), dtype=np.float32)
    for j in range(m):
        for r in range(n):
            acc = np.float32(0.0)
            for q in range(f):
                acc += users[r, q] * items[j, q]
            out[r, j] = acc
    return out


def reference_score_few(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    return (users.astype(np.float64) @ items.T.astype(np.float64)).astype(np.float32)


# --------------------------------------------------------------------------
# Dense references (slow, plain NumPy): the definitions the kernels implement.


def reference_topk(
    scores: np.ndarray, k: int, cand_ok: np.ndarray, excluded: list[set[int]]
) -> list[list[tuple[int, float]]]:
    """Top ``k`` ``(item, score)`` per row by a full sort on (-score, item)."""
    out = []
    for r in range(scores.shape[0]):
        items = [
            j
            for j in range(scores.shape[1])
            if cand_ok[j] and j not in excluded[r] and not np.isnan(scores[r, j])
        ]
        items.sort(key=lambda j: (-float(scores[r, j]), j))
        out.append([(j, float(scores[r, j])) for j in items[:k]])
    return out


def reference_rank_rows(
    scores: np.ndarray,
    k: int,
    cand_ok: np.ndarray,
    excluded: list[set[int]],
    relevant: list[set[int]],
) -> list[dict[str, float] | None]:
    """Per-row metrics at ``k`` by brute force; ``None`` for rows with no relevant candidate."""
    tops = reference_topk(scores, k, cand_ok, excluded)
    out: list[dict[str, float] | None] = []
    for r, top in enumerate(tops):
        cands = [
            j
            for j in range(scores.shape[1])
            if cand_ok[j] and j not in excluded[r] and not np.isnan(scores[r, j])
        ]
        rel = set(relevant[r]) & set(cands)
        if not rel:
            out.append(None)
            continue
        flags = [j in rel for j, _ in top]
        hits = sum(flags)
        dcg = sum(1.0 / np.log2(t + 2) for t, f in enumerate(flags) if f)
        idcg = sum(1.0 / np.log2(t + 2) for t in range(min(k, len(rel))))
        precs = [sum(flags[: t + 1]) / (t + 1) for t, f in enumerate(flags) if f]
        first = next((t for t, f in enumerate(flags) if f), None)
        neg = [j for j in cands if j not in rel]
        if neg:
            s = scores[r]
            pairs = [(s[i] > s[j]) + 0.5 * (s[i] == s[j]) for i in rel for j in neg]
            auc = float(np.mean(pairs))
        else:
            auc = float("nan")
        out.append(
            {
                "precision": hits / k,
                "recall": hits / len(rel),
                "ndcg": dcg / idcg,
                "map": sum(precs) / min(k, len(rel)),
                "mrr": 0.0 if first is None else 1.0 / (first + 1),
                "hit_rate": float(hits > 0),
                "auc": auc,
                "n_relevant": len(rel),
                "top": [j for j, _ in top],
            }
        )
    return out
