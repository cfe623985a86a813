"""Online implicit-feedback matrix factorisation on top of river's ``FunkMF``.

Every engagement is a positive (target 1); the caller passes items sampled from the candidate
pool, learnt as negatives (target 0), the usual trick for one-class feedback.
Scoring many items for one user is a single matrix-vector product over river's latent dicts.

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

State is bounded: beyond ``max_users`` / ``max_items`` the least recently learnt are forgotten.

>>> small = ImplicitMF(n_factors=2, max_users=2, max_items=3)
>>> for u in ("u1", "u2", "u3"):
...     small.learn(u, "a", negatives=["b", "c", "d"])
>>> small.n_users, small.n_items, bool(small.scores("u1", ["a"])[0] == 0.0)
(2, 3, True)
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import numpy as np
from river import optim, reco


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

    def __init__(self, n_factors: int = 16, learning_rate: float = 0.05, l2: float = 0.01, seed: int = 42,
                 max_users: int = 100_000, max_items: int = 50_000):
        self.n_factors = n_factors
        self.learning_rate = learning_rate
        self.l2 = l2
        self.seed = seed
        self.model = reco.FunkMF(
            n_factors=n_factors,
            optimizer=optim.SGD(learning_rate),
            l2=l2,
            initializer=optim.initializers.Normal(mu=0.0, sigma=0.1, seed=seed),
            seed=seed,
        )
        self.updates = 0
        self.max_users = max_users
        self.max_items = max_items
        self._users: OrderedDict[str, None] = OrderedDict()  # least recently learnt first
        self._items: OrderedDict[str, None] = OrderedDict()

    def learn(self, user: str, item: str, negatives: Sequence[str] = ()) -> None:
        self.model.learn_one(user, item, 1.0)
        self.updates += 1
        self._touch(self._users, user, self.max_users, self.model.u_latents)
        self._touch(self._items, item, self.max_items, self.model.i_latents)
        for neg in negatives:
            if neg != item:
                self.model.learn_one(user, neg, 0.0)
                self.updates += 1
                self._touch(self._items, neg, self.max_items, self.model.i_latents)

    @property
    def n_users(self) -> int:
        return len(self.model.u_latents)

    @property
    def n_items(self) -> int:
        return len(self.model.i_latents)

    @staticmethod
    def _touch(order: OrderedDict, key: str, limit: int, latents: dict) -> None:
        order[key] = None
        order.move_to_end(key)
        while len(order) > limit:
            old, _ = order.popitem(last=False)
            latents.pop(old, None)

    def scores(self, user: str, items: Sequence[str]) -> np.ndarray:
        u = self.model.u_latents.get(user)
        out = np.zeros(len(items), dtype=np.float64)
        if u is None:
            return out
        known = [(j, self.model.i_latents.get(it)) for j, it in enumerate(items)]
        known = [(j, v) for j, v in known if v is not None]
        if known:
            idx, vecs = zip(*known)
            out[list(idx)] = np.stack(vecs) @ u
        return out
