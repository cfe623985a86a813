"""The catalog-size cost bench runs and reports one row per size."""

from devtools.bench_catalog import main, measure


def test_scoring_cost_is_measured_per_catalog_size(capsys):
    assert measure(300, 16, rounds=1) > 0
    assert main(["--sizes", "200,400", "--users", "8", "--rounds", "1"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert [r[0] for r in rows] == ["200", "400"] and rows[0][2] == "1.00"
    assert [r[4] for r in rows] == ["1.000", "1.000"]  # the nearest pool is retrieved exactly
