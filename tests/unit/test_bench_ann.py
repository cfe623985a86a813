"""The ANN benchmark compares each method with exact numpy top-k and rejects unknown methods."""

import numpy as np
import pytest

from devtools.bench_ann import Row, exact_topk, fastest, main, make_data, measure, recall_at_k


def test_numpy_is_the_exact_baseline(capsys):
    assert main(["--sizes", "300", "--queries", "8", "--k", "20", "--libs", "numpy"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in out if line.split()[:2] == ["300", "numpy"]]
    assert len(rows) == 1
    size, method, build_s, ms, ratio, recall = rows[0]
    assert (ratio, recall) == ("1.00", "1.000") and float(ms) > 0
    assert out[-2].startswith("fastest with recall >= 0.95: 300: numpy")


def test_exact_topk_matches_a_full_sort():
    catalog, queries = make_data(300, 8, dim=16, seed=1)
    top = exact_topk(queries, catalog, 20)
    assert np.array_equal(top, np.argsort(-(queries @ catalog.T), axis=1)[:, :20])
    row = measure("numpy", catalog, queries, 20, repeats=1)
    assert (row.size, row.method, row.recall) == (300, "numpy", 1.0)


def test_make_data_is_seeded():
    a, qa = make_data(100, 4, dim=8, seed=3)
    b, qb = make_data(100, 4, dim=8, seed=3)
    assert np.array_equal(a, b) and np.array_equal(qa, qb) and a.dtype == np.float32


def test_recall_counts_true_neighbours_found():
    truth = np.array([[1, 2, 3, 4]])
    assert recall_at_k(np.array([[4, 3, 9, -1]]), truth) == 0.5


def test_fastest_ignores_low_recall():
    rows = [Row(10, "numpy", 0, 1.0, 1.0), Row(10, "hnswlib", 1, 0.5, 0.9), Row(10, "usearch", 1, 0.8, 0.96)]
    assert fastest(rows)[10].method == "usearch"


def test_unknown_library_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--libs", "numpy,annoy"])
    assert exc.value.code == 2
    assert "unknown library annoy; choose from numpy, hnswlib, usearch, faiss-ivf" in capsys.readouterr().err


def test_missing_library_is_skipped_with_a_note(capsys, monkeypatch):
    import devtools.bench_ann as bench

    monkeypatch.setitem(bench.MODULES, "usearch", "no_such_module_for_bench_ann")
    assert main(["--sizes", "300", "--queries", "4", "--k", "10", "--libs", "numpy,usearch"]) == 0
    out = capsys.readouterr().out
    assert "skipping usearch: module 'no_such_module_for_bench_ann' is not installed" in out
    assert " usearch " not in out
