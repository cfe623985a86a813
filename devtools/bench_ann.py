"""Exact numpy top-k against approximate nearest-neighbour indexes, at Ripple's pool size.

    python -m devtools.bench_ann [--sizes 2000,10000,50000] [--k 250] [--queries 256]
                                 [--threads 2] [--libs numpy,hnswlib,usearch,faiss-ivf] [--seed 0]

Ranking retrieves, for each user, the k catalog posts with the highest inner product with the
user's interest vector (float32 unit vectors, 384 wide), for a batch of users at once.  Per
catalog size this builds each index on the same clustered catalog, times one batch query of all
users for the top k (best of 3) and reports build seconds, ms per query, the ratio to numpy's
ms per query at that size and recall@k against the exact answer.  The last line names, per
size, the fastest method whose recall is at least 0.95.

Methods (a library that is not installed is skipped with a note; numpy always runs, as the
baseline and the ground truth):
  numpy      one (users x catalog) product, argpartition, the k winners sorted
  hnswlib    HNSW, space='ip', M=32, ef_construction=200, ef=max(600, k)
  usearch    HNSW, metric='ip', connectivity=32, expansion_add=200, expansion_search=max(600, k)
  faiss-ivf  IndexIVFFlat, inner product, nlist=4*sqrt(n), nprobe=32, trained on the catalog

Threads: --threads is passed to each library's own thread argument.  BLAS (numpy's product) is
limited with threadpoolctl when it is installed; otherwise OMP_NUM_THREADS / OPENBLAS_NUM_THREADS
/ MKL_NUM_THREADS are set from --threads before numpy loads, which works only when this module
is run as a script; a caller importing main() must set them before importing numpy.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace

_BLAS_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

if __name__ == "__main__":  # BLAS reads its thread count once, when numpy is loaded
    _pre = argparse.ArgumentParser(add_help=False)
    _pre.add_argument("--threads", default="2")
    _threads = _pre.parse_known_args()[0].threads
    for _var in _BLAS_ENV:
        os.environ[_var] = _threads

import numpy as np  # noqa: E402

from ripple.arg_types import positive_ints  # noqa: E402

DIM = 384
MIN_RECALL = 0.95
MODULES = {"numpy": "numpy", "hnswlib": "hnswlib", "usearch": "usearch", "faiss-ivf": "faiss"}


@dataclass(frozen=True)
class Row:
    size: int
    method: str
    build_s: float
    ms_per_query: float
    recall: float
    ratio: float = 1.0  # ms per query over numpy's at the same size


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def make_data(n: int, queries: int, dim: int = DIM, seed: int = 0, topics: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """``(catalog (n, dim), queries (queries, dim))``, float32 unit vectors shaped like sentence embeddings.

    Posts scatter around ``topics`` gaussian centres that share a common component (typical
    pairwise cosine 0.1-0.2, same topic 0.5-0.7); a query, like a user's interest vector, is
    the normalised mean of 5-30 random posts plus noise, so it often sits between topics.

    >>> catalog, users = make_data(50, 4, dim=8)
    >>> catalog.shape, users.shape, bool(np.allclose(np.linalg.norm(users, axis=1), 1, atol=1e-5))
    ((50, 8), (4, 8), True)
    """
    rng = np.random.default_rng(seed)
    common = _unit(rng.standard_normal(dim))
    centres = _unit(_unit(rng.standard_normal((topics, dim))) + 0.4 * common)
    catalog = _unit(centres[rng.integers(0, topics, n)] + 0.9 * rng.standard_normal((n, dim)) / np.sqrt(dim))
    out = np.empty((queries, dim))
    for i in range(queries):
        picked = catalog[rng.integers(0, n, rng.integers(5, 31))]
        out[i] = picked.mean(0) + 0.3 * rng.standard_normal(dim) / np.sqrt(dim)
    return catalog.astype(np.float32), _unit(out).astype(np.float32)


def exact_topk(queries: np.ndarray, catalog: np.ndarray, k: int) -> np.ndarray:
    """Row indices of the k highest inner products per query, best first: shape (queries, k)."""
    scores = queries @ catalog.T
    idx = np.argpartition(scores, -k, axis=1)[:, -k:]
    order = np.argsort(-np.take_along_axis(scores, idx, 1), axis=1)
    return np.take_along_axis(idx, order, 1)


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each query's true top k present in what was found (padding ids never match)."""
    return float(np.mean([np.isin(t, f).mean() for f, t in zip(found, truth)]))


def _numpy(catalog, k, threads):
    index = np.ascontiguousarray(catalog, dtype=np.float32)
    return lambda q: exact_topk(q, index, k)


def _hnswlib(catalog, k, threads):
    import hnswlib

    index = hnswlib.Index(space="ip", dim=catalog.shape[1])
    index.init_index(max_elements=len(catalog), M=32, ef_construction=200)
    index.set_num_threads(threads)
    index.add_items(catalog, np.arange(len(catalog)), num_threads=threads)
    index.set_ef(max(600, k))
    return lambda q: index.knn_query(q, k=k, num_threads=threads)[0]


def _usearch(catalog, k, threads):
    from usearch.index import Index

    index = Index(ndim=catalog.shape[1], metric="ip", dtype="f32", connectivity=32,
                  expansion_add=200, expansion_search=max(600, k))
    index.add(np.arange(len(catalog), dtype=np.uint64), catalog, threads=threads)
    return lambda q: index.search(q, k, threads=threads).keys.astype(np.int64)


def _faiss_ivf(catalog, k, threads):
    import faiss

    faiss.omp_set_num_threads(threads)
    nlist = max(1, min(len(catalog), round(4 * np.sqrt(len(catalog)))))
    quantizer = faiss.IndexFlatIP(catalog.shape[1])
    index = faiss.IndexIVFFlat(quantizer, catalog.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
    index.train(catalog)
    index.add(catalog)
    index.nprobe = min(32, nlist)
    return lambda q: index.search(q, k)[1]


BUILDERS = {"numpy": _numpy, "hnswlib": _hnswlib, "usearch": _usearch, "faiss-ivf": _faiss_ivf}


def measure(method: str, catalog: np.ndarray, queries: np.ndarray, k: int, threads: int = 1,
            truth: np.ndarray | None = None, repeats: int = 3) -> Row:
    """Build ``method``'s index on ``catalog``, then time a top-k batch query of all ``queries``.

    ``truth`` (the exact top k, computed when omitted) gives the recall; ``ratio`` is left at 1.0.
    """
    k = min(k, len(catalog))
    truth = exact_topk(queries, catalog, k) if truth is None else truth
    t0 = time.perf_counter()
    search = BUILDERS[method](catalog, k, threads)
    build_s = time.perf_counter() - t0
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        found = search(queries)
        best = min(best, time.perf_counter() - t0)
    return Row(len(catalog), method, build_s, best * 1000 / len(queries), recall_at_k(np.asarray(found), truth))


def run(sizes: list[int], methods: list[str], k: int, n_queries: int, threads: int, seed: int) -> list[Row]:
    """One row per size and method, numpy first; each row's ratio is relative to numpy's at its size."""
    rows = []
    for n in sizes:
        catalog, queries = make_data(n, n_queries, seed=seed)
        truth = exact_topk(queries, catalog, min(k, n))
        base = measure("numpy", catalog, queries, k, threads, truth)
        rows.append(base)
        _print_row(base)
        for method in methods:
            if method != "numpy":
                row = measure(method, catalog, queries, k, threads, truth)
                rows.append(replace(row, ratio=row.ms_per_query / base.ms_per_query))
                _print_row(rows[-1])
    return rows


def _print_row(r: Row) -> None:
    print(f"{r.size:>7} {r.method:<10} {r.build_s:>8.3f} {r.ms_per_query:>9.4f} {r.ratio:>8.2f} {r.recall:>9.3f}",
          flush=True)


def fastest(rows: list[Row]) -> dict[int, Row | None]:
    """Per size, the row with the lowest ms per query among those with recall >= 0.95."""
    good = [r for r in rows if r.recall >= MIN_RECALL]
    return {n: min((r for r in good if r.size == n), key=lambda r: r.ms_per_query, default=None)
            for n in dict.fromkeys(r.size for r in rows)}


def _libs(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [x for x in names if x not in BUILDERS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown library {', '.join(unknown)}; choose from {', '.join(BUILDERS)}")
    return names


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m devtools.bench_ann", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=positive_ints, default=[2000, 10000, 50000], metavar="N,N,...",
                   help="catalog sizes (default 2000,10000,50000)")
    p.add_argument("--k", type=int, default=250, help="posts retrieved per query (default 250, ranking's pool)")
    p.add_argument("--queries", type=int, default=256, help="users queried in one batch (default 256)")
    p.add_argument("--threads", type=int, default=2, help="threads for BLAS and each library (default 2)")
    p.add_argument("--libs", type=_libs, default=list(BUILDERS), metavar="NAME,...",
                   help=f"methods to compare (default {','.join(BUILDERS)})")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated catalog and queries (default 0)")
    args = p.parse_args(argv)
    methods = []
    for name in args.libs:
        if name == "numpy" or importlib.util.find_spec(MODULES[name]) is not None:
            methods.append(name)
        else:
            print(f"skipping {name}: module {MODULES[name]!r} is not installed")
    try:
        from threadpoolctl import threadpool_limits
        blas = threadpool_limits(limits=args.threads, user_api="blas")
    except ImportError:
        blas = nullcontext()
    t0 = time.perf_counter()
    print(f"k={args.k} queries={args.queries} threads={args.threads} dim={DIM} seed={args.seed}")
    print(f"{'size':>7} {'method':<10} {'build s':>8} {'ms/query':>9} {'x numpy':>8} {'recall@k':>9}")
    with blas:
        rows = run(args.sizes, methods, args.k, args.queries, args.threads, args.seed)
    best = ", ".join(f"{n}: {r.method} ({r.ms_per_query:.4f} ms/query)" if r else f"{n}: none"
                     for n, r in fastest(rows).items())
    print(f"fastest with recall >= {MIN_RECALL}: {best}")
    print(f"total {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
