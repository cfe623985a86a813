"""The JSON Schemas of Ripple's topics (``<name>.json``, schema_version 1): one copy, read by the
producer client before it sends and by the worker when it decodes."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

#: input topic → schema name
INPUT_SCHEMAS = {"posts": "post", "likes": "like", "comments": "comment", "shares": "share", "follows": "follow"}


@lru_cache(maxsize=None)
def load_schema(name: str) -> dict:
    """The JSON Schema document ``<name>.json`` (``post``, ``like``, ..., ``recommendation``)."""
    text = resources.files(__name__).joinpath(f"{name}.json").read_text("utf-8")
    return json.loads(text)
