"""Python's cyclic garbage collector, tuned for a long-running stream worker.

A worker holds a large, long-lived heap (Faust, aiokafka, numpy and river state, the profiles and
the catalog) and allocates many short-lived objects per event.  With CPython's defaults (a young
collection every 700 net allocations, a full one every 100 young ones) the full collections walk
that whole heap: ``ripple bench`` measured 5 of them in a short run, up to 107–136 ms each, and
they were the 1 % tail of event→recommendation latency (p99 ~98 ms at 1,000 new users/s).

Two settings, each measured against the defaults in the same bench (docs/benchmarks.md):

* ``gc.freeze()`` once the worker is built, before it starts: what exists then (modules, the
  Faust app, the model) moves to a permanent generation that collections no longer walk; the
  state restored and built later (profiles, catalog) is still collected as usual.  Frozen
  objects are still freed by reference counting; only a reference cycle among them would
  outlive its use.  Freezing alone cut the longest full collection to 45–49 ms.
* a young-generation threshold of ``threshold`` allocations instead of 700, so full
  collections come 10× to 30× less often (each young collection stays a few milliseconds).

Together: p99 42 ms instead of 98 ms at 1,000 new users/s, and ~10× less time collecting.

>>> import gc
>>> before = gc.get_threshold()
>>> tune(0); gc.get_threshold() == before  # 0: Python's own settings
True
>>> tune(20_000)
>>> gc.get_threshold()[0]
20000
>>> gc.unfreeze(); gc.set_threshold(*before)
"""

from __future__ import annotations

import gc


def tune(threshold: int) -> None:
    """Freeze what exists now; collect the young generation every ``threshold`` allocations
    (``0``: keep Python's thresholds and do not freeze)."""
    if threshold <= 0:
        return
    gc.collect()  # what start-up left as garbage goes now, not into the permanent generation
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(threshold, gen1, gen2)
