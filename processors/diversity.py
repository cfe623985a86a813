"""Diversity: greedy maximal marginal relevance (MMR) over each user's best candidates.

A ranking's blended scores put near-duplicates side by side; MMR picks, one at a time, the
candidate with the best ``lam * score - (1 - lam) * (highest cosine to a post already picked)``,
and caps the posts per author.  :func:`diversify` does it for many users at once, with each
user's picks exactly those of the textbook loop for that user alone.

>>> import numpy as np
>>> emb = np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32)  # rows 0 and 1 are the same post
>>> class Config: mmr_lambda, author_cap = 0.5, 2
>>> diversify([np.array([0.9, 0.8, 0.5])], emb, [np.arange(3)], ["a", "b", "c"], 2, Config)
[[0, 2]]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from processors.selection import best_first

if TYPE_CHECKING:
    from processors.ranking import RankConfig


def diversify(scores: Sequence[np.ndarray], emb: np.ndarray, cands: Sequence[np.ndarray],
               authors: Sequence[str], k: int, config: RankConfig) -> list[list[int]]:
    """Greedy MMR for several users at once: trade score against similarity to what is already
    picked; cap posts per author.  User ``u``'s candidate ``j`` is catalog row ``cands[u][j]``
    (``emb`` and ``authors`` per catalog row) with score ``scores[u][j]``.  Returns each user's
    picked candidates (indices into ``scores[u]``) in order, as the user's own MMR would."""
    orders = [best_first(s, max(k * 5, 50)) for s in scores]
    picked: list[list[int]] = [[] for _ in orders]
    for length in {order.size for order in orders} - {0}:  # one call per shortlist length (see _greedy_mmr)
        users = [u for u, order in enumerate(orders) if order.size == length]
        _greedy_mmr(*([x[u] for u in users] for x in (scores, cands, orders, picked)), emb, authors, k, config)
    return picked


def _greedy_mmr(scores: list[np.ndarray], cands: list[np.ndarray], orders: list[np.ndarray],
                picked: list[list[int]], emb: np.ndarray, authors: Sequence[str], k: int, config: RankConfig) -> None:
    """:func:`diversify` for users whose shortlists ``orders`` have one length; fills ``picked``.

    Plain greedy MMR (each user takes the first maximum of ``base - (1 - lam) * penalty`` over
    its live entries; a pick raises the penalties to its similarities where higher; ``lam >= 1``:
    score order), one step for all users: one argmax, an author-cap check per user (a candidate
    over the cap just dies, no penalty moves), one stacked matrix-vector product.  A dead entry
    is -inf in ``mmr`` and skipped by the update.  Per user, the arithmetic is the textbook loop's
    (tests/unit/test_ranking.py): ``np.matmul`` on a stack calls gemv per user as ``sub @ v``
    does, and gemv's sums depend on the row count (padding shortlists would change last bits).
    """
    lam, cap, c = config.mmr_lambda, config.author_cap, max(0.0, 1 - config.mmr_lambda)
    rows = np.stack([cand[order] for cand, order in zip(cands, orders)])
    sub = emb.take(rows, axis=0) if c else None  # (users, shortlist, dim): the shortlists' rows only
    base = lam * np.stack([s[order] for s, order in zip(scores, orders)])
    penalty = np.zeros_like(base)  # max(0, highest similarity to a picked post)
    mmr = base - c * penalty
    alive = np.ones(base.shape, dtype=bool)
    short, rows = [order.tolist() for order in orders], rows.tolist()
    per_author: list[dict[str, int]] = [{} for _ in orders]
    going, left = list(range(len(orders))), len(short[0])  # users (array rows) not done; live entries each
    while going and left:
        best = mmr.argmax(axis=1)
        at = np.array(going)
        mmr[at, best[at]], alive[at, best[at]] = -np.inf, False
        left -= 1
        moved = []  # the users whose pick was taken and who go on
        for i, b in zip(going, best[at].tolist()):
            author = authors[rows[i][b]]
            if per_author[i].get(author, 0) < cap:
                per_author[i][author] = per_author[i].get(author, 0) + 1
                picked[i].append(short[i][b])
                if len(picked[i]) < k:
                    moved.append(i)
        going = [i for i in going if len(picked[i]) < k]
        if not moved or not left or not c:
            continue
        if 2 * len(going) <= len(short):  # drop the finished users' rows
            keep, new = np.array(going), {i: n for n, i in enumerate(going)}
            sub, base, penalty, mmr, alive, best = (x[keep] for x in (sub, base, penalty, mmr, alive, best))
            short, rows, per_author, picked = ([x[i] for i in going] for x in (short, rows, per_author, picked))
            moved, going = [new[i] for i in moved], list(range(len(going)))
        sim = np.matmul(sub, sub[np.arange(len(short)), best][:, :, None])[:, :, 0]  # all users' rows
        if len(moved) == len(short):
            np.maximum(penalty, sim, out=penalty)
        else:  # rows whose pick died (author cap) or whose user is done keep their penalties
            taken = np.zeros((len(short), 1), dtype=bool)
            taken[moved] = True
            np.maximum(penalty, sim, out=penalty, where=taken)
        np.subtract(base, c * penalty, out=mmr, where=alive)  # dead entries stay -inf
