"""How ``ripple bench`` (:mod:`devtools.bench`) times a run from its outputs and the worker's log.

Throughput ends at the Kafka timestamp of the worker's last output record (the posts table's
changelog; the profile changelog records that applied an event, i.e. a user's ``events`` count
grew), so start-up and recovery time are excluded:

* the engagement engine's drain starts when its first batch starts (its log line ``engage: first batch
  of N records at T``), as the raw aiokafka pass-through's clock starts at its first fetch.  Its
  first output comes later: a batch's profiles are written only once the broker has acknowledged
  its recommendations, while the next batch is processed (0.35–0.43 s after the start in five
  drains of 20,000 events, with 2,000 or more events already processed), so first-to-last
  changelog timestamps overstated the rate by 19–22 % in three drains timed both ways;
* elsewhere (post embedding, the bare Faust agents), outputs follow their
  inputs at once, and the first burst of output, whose items were processed before its
  timestamp, is left out (:func:`steady_rate`).
"""

from __future__ import annotations

import re
from pathlib import Path

#: Output records further apart than this (ms) belong to different bursts: the embedding agent
#: writes each batch's posts in one burst, and embedding the next batch takes longer than this
BURST_GAP_MS = 5


def steady_rate(points: list[tuple[int, int]], gap_ms: int = BURST_GAP_MS) -> tuple[float, tuple[int, int]]:
    """Items per second of a worker from its output records, ``(timestamp ms, items applied)``
    each, and the window (ms) it was measured over.

    For outputs written right after their inputs (post embedding, the bare Faust
    agents; not the engagement engine's profiles, see above): a batch's records come in
    one burst after it was processed, so the first burst's items were processed before the first
    timestamp, and counted over first to last timestamp they would overstate the rate by the first
    batch's share (64 of the bench's 2,000 posts).  The rate is the items of the bursts after the
    first over the time from the end of the first burst to the end of the last: whole
    process-and-write cycles only.  With a single burst (outputs with no gap over ``gap_ms``, as
    a per-event agent's) every millisecond counts as a burst.

    >>> rate, window = steady_rate([(0, 100), (1, 100), (50, 50), (51, 50), (100, 100)])
    >>> round(rate), window  # the 200 items after the first burst, in the 99 ms after it
    (2020, (1, 100))
    >>> round(steady_rate([(t, 1) for t in range(11)])[0])  # one burst: the items after the first ms
    1000
    >>> steady_rate([(7, 3)])[0]
    nan
    """
    points = sorted(points)
    ends = [i for i in range(len(points) - 1) if points[i + 1][0] - points[i][0] > gap_ms]
    if not ends:
        if gap_ms == 0 or len(points) < 2:
            return float("nan"), (0, 0)
        return steady_rate(points, 0)
    start, end = points[ends[0]][0], points[-1][0]
    return per_second(sum(n for _, n in points[ends[0] + 1:]), (end - start) / 1000.0), (start, end)


def per_second(n: int, span: float) -> float:
    """``n`` per second over ``span`` seconds (NaN when the span is unknown or zero)."""
    return n / span if span == span and span > 0 else float("nan")


def engine_start(log_path: Path, after: float) -> float | None:
    """When the engagement engine began its first batch (unix time), from the worker's log line
    ``engage: first batch of N records at T (unix time)``, the first one at or after ``after``."""
    text = log_path.read_text(encoding="utf-8", errors="replace") if log_path.exists() else ""
    times = [float(t) for t in re.findall(r"engage: first batch of \d+ records at ([0-9.]+) \(unix time\)", text)]
    return next((t for t in times if t >= after), None)
