"""Online implicit-feedback matrix factorisation on top of river's ``FunkMF``.

Every engagement is a positive (target 1); the caller passes items sampled from the candidate
pool, learnt as negatives (target 0), the usual trick for one-class feedback.
Scoring many items for one user is a single matrix-vector product over river's latent dicts.

Learning is deferred and batched: :meth:`ImplicitMF.learn` queues its (user, item, target)
pairs, and the next read (a score, ``model``) applies them with river's own SGD arithmetic, one
vectorised step per *round* of pairs that share no user and no item.  Pairs are put in the
earliest round after every earlier pair they share a vector with, so each vector sees its
updates in arrival order and the result is sequential ``FunkMF.learn_one`` calls' (up to the
rounding of the dot product).  New factors are drawn, and forgotten ones dropped, at ``learn``
time, in the same order as before.  The engagement engine's reads come once per batch, so a batch's
likes are learnt in a few dozen numpy steps instead of four ``learn_one`` calls each (~4× less
time per like).

Examples
--------
>>> mf = ImplicitMF(n_factors=4, seed=1)
>>> items = ["a", "b", "c", "d"]
>>> for _ in range(50):
...     mf.learn("u", "a", negatives=["b", "c", "d"])
>>> s = mf.scores("u", items)
>>> bool(s[0] == s.max())
True
>>> mf.scores("nobody", items).tolist()
[0.0, 0.0, 0.0, 0.0]

An item's initial factors are drawn from a generator seeded by the item id
(:class:`ItemLatents`), so every worker starts an item from the same vector, and the item-factor
changes one worker learnt (:meth:`ImplicitMF.take_item_deltas`) mean the same on another
(:meth:`ImplicitMF.add_item_deltas`; :mod:`processors.item_state` syncs them).

>>> a, b = ImplicitMF(n_factors=2), ImplicitMF(n_factors=2)
>>> a.track_item_deltas()
>>> a.learn("u1", "x")
>>> deltas = a.take_item_deltas()
>>> b.add_item_deltas(deltas)
>>> sorted(deltas), bool(np.allclose(b.model.i_latents["x"], a.model.i_latents["x"]))
(['x'], True)

State is bounded: beyond ``max_users`` / ``max_items`` the least recently learnt are forgotten.

>>> small = ImplicitMF(n_factors=2, max_users=2, max_items=3)
>>> for u in ("u1", "u2", "u3"):
...     small.learn(u, "a", negatives=["b", "c", "d"])
>>> small.n_users, small.n_items, bool(small.scores("u1", ["a"])[0] == 0.0)
(2, 3, True)
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Iterable, Mapping, Sequence

import numpy as np
from river import optim, reco

from processors.protocols import IndexCache, index_of


class ItemLatents(dict):
    """Item factors: a missing item gets ``Normal(0, sigma)`` factors drawn from a generator
    seeded by ``(seed, item)``, the same vector on every worker and after every restart."""

    def __init__(self, n_factors: int, seed: int, sigma: float = 0.1):
        super().__init__()
        self.n_factors, self.seed, self.sigma = n_factors, seed, sigma

    def __missing__(self, item) -> np.ndarray:
        digest = hashlib.blake2b(f"{self.seed}:{item}".encode(), digest_size=8).digest()
        vec = np.random.default_rng(int.from_bytes(digest, "little")).normal(0.0, self.sigma, self.n_factors)
        self[item] = vec
        return vec


class ImplicitMF:
    """Implicit MF with sampled negatives (satisfies ``processors.protocols.FactorModel``).

    Parameters
    ----------
    n_factors
        Latent dimension.
    learning_rate
        SGD step for user and item factors.
    l2
        L2 penalty on the factors.
    seed
        Seeds the initial factors.
    max_users, max_items
        Users and items with latent factors; the least recently learnt are forgotten beyond them.
    """

    version = "funkmf-implicit-1"
    #: queued ``learn`` calls applied without waiting for a read
    max_pending = 4096
    #: up to this many queued ``learn`` calls are applied pair by pair (fewer numpy calls than rounds)
    small_flush = 4

    def __init__(self, n_factors: int = 16, learning_rate: float = 0.05, l2: float = 0.01, seed: int = 42,
                 max_users: int = 100_000, max_items: int = 50_000):
        self.n_factors = n_factors
        self.learning_rate = learning_rate
        self.l2 = l2
        self.seed = seed
        self._model = reco.FunkMF(
            n_factors=n_factors,
            optimizer=optim.SGD(learning_rate),
            l2=l2,
            initializer=optim.initializers.Normal(mu=0.0, sigma=0.1, seed=seed),
            seed=seed,
        )
        self._model.i_latents = ItemLatents(n_factors, seed)
        self.updates = 0
        self.max_users = max_users
        self.max_items = max_items
        self._users: OrderedDict[str, None] = OrderedDict()  # least recently learnt first
        self._items: OrderedDict[str, None] = OrderedDict()
        # item factors copied into one matrix for scoring (rows refreshed lazily from river's dicts)
        self._row: dict[str, int] = {}
        self._matrix = np.zeros((64, n_factors), dtype=np.float64)
        self._free: list[int] = []
        self._dirty: set[str] = set()
        self._row_version = 0  # bumped whenever an item gains or loses its row
        self._rows_cache = IndexCache()
        self._pending: list[tuple[np.ndarray, list, list]] = []  # (user vector, item vectors, targets)
        #: item → its factors when this worker first changed them since the last ``take_item_deltas``
        #: (``None``: not tracked; see :meth:`track_item_deltas`)
        self._delta_base: dict[str, np.ndarray] | None = None

    @property
    def model(self) -> reco.FunkMF:
        """The river model, with every queued update applied."""
        self.flush()
        return self._model

    def learn(self, user: str, item: str, negatives: Sequence[str] = ()) -> None:
        """Queue ``(user, item, 1)`` and ``(user, neg, 0)`` for each negative other than ``item``."""
        users, items = self._model.u_latents, self._model.i_latents
        u = users[user]  # drawn here if new: the initialiser sees the same order as learn_one calls
        vecs, targets = [items[item]], [1.0]
        base = self._delta_base
        if base is not None and item not in base:
            base[item] = vecs[0].copy()
        self._touch(self._users, user, self.max_users, users)
        self._touch(self._items, item, self.max_items, items)
        self._dirty.add(item)
        for neg in negatives:
            if neg != item:
                vecs.append(items[neg])
                if base is not None and neg not in base:
                    base[neg] = vecs[-1].copy()
                targets.append(0.0)
                self._touch(self._items, neg, self.max_items, items)
                self._dirty.add(neg)
        self._pending.append((u, vecs, targets))
        self.updates += len(vecs)
        if len(self._pending) >= self.max_pending:  # no read for a long while: bound the queue
            self.flush()

    def flush(self) -> None:
        """Apply the queued pairs now, as the next read would (``streams.forked`` does this before a
        fork, so the updates land in the worker at the same moment as without one):
        ``FunkMF.learn_one``'s squared-loss SGD step, one round of pairs with distinct user and
        item vectors at a time (see the module docstring)."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        m = self._model
        lr_u, lr_i, l2, clip = m.u_optimizer.learning_rate, m.i_optimizer.learning_rate, m.l2, m.clip_gradient
        if len(pending) <= self.small_flush:  # a few likes (one event at a time): learn_one's steps, in order
            n = 0
            for u, vecs, targets in pending:
                for i, y in zip(vecs, targets):
                    g = min(max(2.0 * (np.dot(u, i).item() - y), -clip), clip)
                    u_grad, i_grad = g * i + l2 * u, g * u + l2 * i
                    u -= lr_u * u_grad
                    i -= lr_i * i_grad
                n += len(vecs)
            m.u_optimizer.n_iterations += n
            m.i_optimizer.n_iterations += n
            return
        # every distinct vector gets a row of one matrix; rounds update rows, written back once
        u_row: dict[int, int] = {}  # id(vector) → row
        i_row: dict[int, int] = {}
        u_vecs: list[np.ndarray] = []
        i_vecs: list[np.ndarray] = []
        u_level: list[int] = []  # row → round of its latest pair
        i_level: list[int] = []
        rounds: list[tuple[list, list, list]] = []
        n = 0
        for u, vecs, targets in pending:
            a = u_row.get(id(u))
            if a is None:
                a = u_row[id(u)] = len(u_vecs)
                u_vecs.append(u)
                u_level.append(-1)
            r = u_level[a]
            for i, y in zip(vecs, targets):
                b = i_row.get(id(i))
                if b is None:
                    b = i_row[id(i)] = len(i_vecs)
                    i_vecs.append(i)
                    i_level.append(-1)
                r = max(r, i_level[b]) + 1
                i_level[b] = r
                if r == len(rounds):
                    rounds.append(([], [], []))
                rows_u, rows_i, ys = rounds[r]
                rows_u.append(a)
                rows_i.append(b)
                ys.append(y)
            u_level[a] = r
            n += len(vecs)
        U, I = np.array(u_vecs), np.array(i_vecs)
        for rows_u, rows_i, ys in rounds:
            u, i = U[rows_u], I[rows_i]
            pred = (u[:, None, :] @ i[:, :, None]).ravel()  # each row's own dot product, as np.dot
            g = np.clip(2.0 * (pred - np.array(ys)), -clip, clip)[:, None]
            U[rows_u] = u - lr_u * (g * i + l2 * u)  # both gradients from the vectors before the step
            I[rows_i] = i - lr_i * (g * u + l2 * i)
        for vec, row in zip(u_vecs, U):
            vec[:] = row
        for vec, row in zip(i_vecs, I):
            vec[:] = row
        m.u_optimizer.n_iterations += n
        m.i_optimizer.n_iterations += n

    # -- item-side state shared between workers (processors.item_state) ---------------------
    def track_item_deltas(self) -> None:
        """From now on, remember what this model learns for items, for :meth:`take_item_deltas`."""
        if self._delta_base is None:
            self._delta_base = {}

    def take_item_deltas(self) -> dict[str, np.ndarray]:
        """Item → change of its factors learnt here since the last call (or since
        :meth:`track_item_deltas`), changes added by :meth:`add_item_deltas` excluded."""
        self.flush()
        base, self._delta_base = self._delta_base or {}, {}
        latents = self._model.i_latents
        return {item: latents[item] - start for item, start in base.items() if item in latents}

    def add_item_deltas(self, deltas: Mapping[str, np.ndarray]) -> None:
        """Add other workers' item-factor changes to this model's (a new item starts from its
        seeded factors, as it would have here)."""
        self.flush()
        latents, base = self._model.i_latents, self._delta_base
        for item, delta in deltas.items():
            vec = latents[item]
            vec += delta
            if base is not None and item in base:
                base[item] += delta  # keeps the other workers' part out of this worker's next delta
            self._touch(self._items, item, self.max_items, latents)
            self._dirty.add(item)

    def item_ids(self) -> list[str]:
        """Every item with factors."""
        return list(self.model.i_latents)

    def item_factors(self, items: Iterable[str]) -> dict[str, np.ndarray]:
        """The current factors of those of ``items`` that have any."""
        latents = self.model.i_latents
        return {item: latents[item].copy() for item in items if item in latents}

    def set_item_factors(self, factors: Mapping[str, np.ndarray]) -> None:
        """Replace items' factors (a snapshot read back)."""
        self.flush()
        latents = self._model.i_latents
        for item, vec in factors.items():
            latents[item] = np.array(vec, dtype=np.float64)
            self._touch(self._items, item, self.max_items, latents)
            self._dirty.add(item)

    def user_factors(self, user: str) -> np.ndarray | None:
        """``user``'s factors (``None``: none learnt), saved with the user's profile."""
        vec = self.model.u_latents.get(user)
        return None if vec is None else vec.copy()

    def set_user_factors(self, user: str, vec: Sequence[float]) -> None:
        """Put back ``user``'s factors read from the profile."""
        if len(vec) != self.n_factors:
            return  # saved by a model of another size: learnt again from scratch
        self.flush()
        self._model.u_latents[user] = np.array(vec, dtype=np.float64)
        self._touch(self._users, user, self.max_users, self._model.u_latents)

    @property
    def n_users(self) -> int:
        return len(self._model.u_latents)

    @property
    def n_items(self) -> int:
        return len(self._model.i_latents)

    def _touch(self, order: OrderedDict, key: str, limit: int, latents: dict) -> None:
        order[key] = None
        order.move_to_end(key)
        while len(order) > limit:
            old, _ = order.popitem(last=False)
            latents.pop(old, None)
            if latents is self._model.i_latents:
                self._dirty.add(old)

    def scores(self, user: str, items: Sequence[str]) -> np.ndarray:
        """``user``'s score for each of ``items`` (0 for unknown users and items): one gather and
        one matrix-vector product over a cached copy of the item factors."""
        u = self.model.u_latents.get(user)  # ``model``: queued updates applied first
        if u is None:
            return np.zeros(len(items), dtype=np.float64)
        self._sync()
        rows = index_of(items, self.rows_for)
        out = self._matrix.take(rows, axis=0) @ u  # ``take``: the rows of ``[rows]``, copied ~4× faster
        out[rows < 0] = 0.0
        return out

    def rows_for(self, items: Sequence[str], version) -> np.ndarray:
        """Matrix rows of ``items`` (-1: none), cached while ``version`` (the caller's name for that
        list of items) and the row assignment stay the same."""
        return self._rows_cache.rows(items, self._row, version=version, generation=self._row_version)

    def _sync(self) -> None:
        """Copy the factors learnt since the last call into the matrix; drop forgotten items."""
        latents, row = self.model.i_latents, self._row
        for item in self._dirty:
            vec = latents.get(item)
            if vec is None:  # forgotten (beyond max_items)
                if item in row:
                    self._free.append(row.pop(item))
                    self._row_version += 1
                continue
            r = row.get(item)
            if r is None:
                self._row_version += 1
                r = self._free.pop() if self._free else len(row)
                if r >= len(self._matrix):
                    self._matrix = np.concatenate([self._matrix, np.zeros_like(self._matrix)])
                row[item] = r
            self._matrix[r] = vec
        self._dirty.clear()
