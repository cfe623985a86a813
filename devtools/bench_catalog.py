"""What a recommendation costs as the catalog grows (no broker, no model).

    python -m devtools.bench_catalog [--sizes 2000,10000,50000] [--users 256] [--rounds 3]
    ripple bench --catalog [--catalog-sizes 2000,10000,50000]

For each catalog size: a ``Recommender`` (the worker's: factor model, co-engagement) holding that
many posts with random unit embeddings (384 wide, 200 authors) and popularity, ``--users``
users with 20 engagements each; then the time to score all of them at once, as the engagement
engine does (``Recommender.recommendations``), best of ``--rounds``.  Reported per size: ms per
user, the ratio to the smallest size (the goal: at most 2x from 2,000 to 50,000 posts), the
floor every exact ranking pays (the users x catalog cosine product and each user's nearest
``per_source`` rows, alone) and the recall of the nearest pool against an exact sort (1.0:
ranking retrieves it exactly; approximate indexes were measured slower at this pool size, see
docs/benchmarks.md).  BLAS runs on one thread unless ``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS``
say otherwise, as in the worker (importing the ``ripple`` package sets that before numpy loads).
"""

from __future__ import annotations

import argparse
import sys
import time

from ripple.arg_types import positive_int, positive_ints  # first: the worker's BLAS threads

import numpy as np

USERS, ROUNDS = 256, 3


def build(n_posts: int, n_users: int, dim: int = 384, seed: int = 0):
    from models.factors import ImplicitMF
    from processors.events import Engagement, Post
    from processors.profiles import UserProfile
    from processors.recommender import Recommender, RecommenderConfig

    rng = np.random.default_rng(seed)
    now = 1_000_000.0
    rec = Recommender(dim, factors=ImplicitMF(max_items=n_posts), clock=lambda: now,
                      config=RecommenderConfig(min_interval_s=0.0, catalog_limit=n_posts))
    vectors = rng.standard_normal((n_posts, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"p{i}" for i in range(n_posts)]
    rec.on_posts([Post(pid, f"a{i % 200}", "", now - rng.uniform(0, 86_400)) for i, pid in enumerate(ids)], vectors)
    profiles = []
    for u in range(n_users):
        profile = UserProfile(f"u{u}")
        for j in range(20):
            rec.on_engagement(Engagement("like", profile.user_id, ids[int(rng.integers(n_posts))], now - 20 + j), profile)
        profiles.append(profile)
    return rec, profiles


def measure(n_posts: int, n_users: int, rounds: int) -> float:
    """Best ms per user of scoring ``n_users`` at once on a catalog of ``n_posts``."""
    return measure_all(n_posts, n_users, rounds)[0]


def measure_all(n_posts: int, n_users: int, rounds: int) -> tuple[float, float, float]:
    """``(ms per user, floor ms per user, nearest-pool recall)`` on a catalog of ``n_posts``."""
    from processors import ranking

    rec, profiles = build(n_posts, n_users)
    rec.recommendations(profiles[:8])  # warm: the factor model applies its queued updates
    best = floor = float("inf")
    now = rec.clock()
    vectors = np.stack([v for v, _ in (p.interest(rec.catalog.lookup, now) for p in profiles)])
    m = rec.config.rank.per_source
    view = rec.catalog.snapshot(now)
    for _ in range(rounds):
        t0 = time.perf_counter()
        rec.recommendations(profiles)
        best = min(best, time.perf_counter() - t0)
        t0 = time.perf_counter()
        sims = vectors @ view.embeddings.T
        np.argpartition(-sims, min(m, n_posts - 1), axis=1)
        floor = min(floor, time.perf_counter() - t0)
    similarity = ranking._similarity(view, list(vectors))(0, len(profiles))
    got = similarity.nearest(m)
    exact = np.concatenate([u * n_posts + np.argsort(-row)[:m] for u, row in enumerate(vectors @ view.embeddings.T)])
    recall = len(np.intersect1d(got, exact)) / exact.size
    return best * 1000 / n_users, floor * 1000 / n_users, recall


def report(sizes: list[int], users: int = USERS, rounds: int = ROUNDS) -> int:
    """Measure every size and print the table."""
    rows = [(n, *measure_all(n, users, rounds)) for n in sizes]
    print(f"{'posts':>8} {'ms/user':>9} {'x smallest':>11} {'floor ms/user':>14} {'nearest recall':>15}")
    for n, ms, floor, recall in rows:
        print(f"{n:>8,} {ms:>9.3f} {ms / rows[0][1]:>11.2f} {floor:>14.3f} {recall:>15.3f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m devtools.bench_catalog", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=positive_ints, default=[2000, 10000, 50000], metavar="N,N,...",
                   help="catalog sizes (default 2000,10000,50000)")
    p.add_argument("--users", type=positive_int, default=USERS, help=f"users scored at once (default {USERS})")
    p.add_argument("--rounds", type=positive_int, default=ROUNDS,
                   help=f"measurements per size, best kept (default {ROUNDS})")
    args = p.parse_args(argv)
    return report(args.sizes, args.users, args.rounds)


if __name__ == "__main__":
    sys.exit(main())
