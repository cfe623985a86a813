"""How ``ripple bench`` times a worker's run from its outputs and its log (no broker needed)."""

import math

from devtools.bench_timing import engine_start, steady_rate


def test_steady_rate_leaves_out_the_first_burst_of_output():
    # three batches of 100 items, each written in a burst right after it was processed (50 ms each)
    points = [(t, 10) for t in range(1000, 1010)] + [(t, 10) for t in range(1050, 1060)] + [(t, 10) for t in range(1100, 1110)]
    rate, window = steady_rate(points)
    assert window == (1009, 1109)
    assert math.isclose(rate, 200 / 0.1)  # batches two and three in the 100 ms after the first burst


def test_steady_rate_of_an_unbroken_stream_leaves_out_only_the_first_millisecond():
    rate, window = steady_rate([(t, 2) for t in range(500, 601)])
    assert window == (500, 600) and math.isclose(rate, 200 / 0.1)
    assert math.isnan(steady_rate([(5, 1)])[0]) and math.isnan(steady_rate([])[0])


def test_engine_start_is_the_first_line_of_this_run(tmp_path):
    log = tmp_path / "worker.log"
    assert engine_start(log, after=0) is None  # no log yet
    log.write_text("[2026-11-24 08:00:00,000] [1] [INFO] engage: first batch of 12 records at 100.250000 (unix time)\n"
                   "other line\n"
                   "2026-11-24 09:00:00 INFO ripple.worker: engage: first batch of 2000 records at 200.500000 (unix time)\n"
                   "engage: first batch of 7 records at 300.000000 (unix time)\n")
    assert engine_start(log, after=150) == 200.5  # an earlier run's line (same file, appended) is skipped
    assert engine_start(log, after=400) is None
