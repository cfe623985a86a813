"""JSON bytes for what the workers write to Kafka: profiles, recommendations, dead letters.

orjson writes a 2 KB profile about 7× faster than ``json.dumps(...).encode()`` (a profile is
re-saved for every batch it changes in, so this is on the hot path).  The text is compact (no
spaces) and numbers read back to the same values; numpy scalars and arrays are written as
numbers and lists.  Faust's own ``json`` codec picks orjson up as well when it is installed.

>>> import json, numpy as np
>>> dumps({"score": np.float32(0.5), "ids": ["a", "b"], "n": 3})
b'{"score":0.5,"ids":["a","b"],"n":3}'
>>> doc = {"w": 0.1 + 0.2, "nested": {"k": [1e-05, -2.5]}}
>>> json.loads(dumps(doc)) == doc
True
"""

from __future__ import annotations

from typing import Any

import orjson

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _default(obj: Any) -> Any:
    """Subclasses orjson does not take (e.g. ``numpy.float64`` is a ``float``)."""
    for kind in (float, int, str):
        if isinstance(obj, kind):
            return kind(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def dumps(obj: Any) -> bytes:
    """``obj`` as compact UTF-8 JSON."""
    return orjson.dumps(obj, default=_default, option=_OPTIONS)
