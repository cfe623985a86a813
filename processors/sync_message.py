"""The model-sync message: what one worker learnt in one interval, by shared part.

A worker's learned state that every worker needs is split into *shared parts*
(:class:`SharedPart`): the item side of the recommendation models
(:class:`processors.item_state.ItemState`, ``items``), the learned replies with the comment
directory (:class:`processors.reply_state.ReplyState`, ``replies``), the trends
(:class:`processors.trends.Trends`, ``trends``) and the ranking blend
(:class:`processors.blend_learning.BlendLearner`, ``blend``).  Each part gives its
deltas as a JSON-able document; a message carries the documents of one interval with the
sender's origin id and sequence number (``client/ripple_client/schemas/model_sync.json``).

>>> data = encode("w1", 3, {"items": {"events": 0}})
>>> decode(data)
('w1', 3, {'items': {'events': 0}})
>>> decode(b'{"format": 9}')
Traceback (most recent call last):
...
ValueError: not a model-sync message (unknown format 9)
"""

from __future__ import annotations

import json
from typing import Iterable, Mapping, Protocol

FORMAT = 1
#: the most bytes one message's documents should take (Kafka's default limits are 1 MB a record)
MAX_MESSAGE_BYTES = 512 * 1024


class SharedPart(Protocol):
    """Learned state shared by every worker and kept in snapshots."""

    name: str  # its key in a model-sync message
    key_prefix: str  # of its snapshot records' keys (the longest matching prefix wins)
    changed: set[str]  # snapshot keys changed since the last snapshot

    def take_docs(self, max_bytes: int = MAX_MESSAGE_BYTES) -> list[dict]:
        """What was learnt here since the last call, as documents of about ``max_bytes`` of
        JSON at most each, one message each (deltas add, so any split applies the same); ``[]``:
        nothing."""

    def apply_doc(self, doc: dict) -> None:
        """Add another worker's document; ``ValueError`` if it is not one."""

    def all_keys(self) -> set[str]:
        """Every key this worker holds state of (a full snapshot)."""

    def snapshot(self, keys: Iterable[str]) -> dict[str, bytes | None]:
        """Each key's whole state (``None``: nothing is known of it any more)."""

    def restore(self, records: Mapping[str, bytes]) -> int:
        """Put back :meth:`snapshot` records; how many were readable."""


def encode(origin: str, seq: int, parts: Mapping[str, dict]) -> bytes:
    return json.dumps({"format": FORMAT, "origin": origin, "seq": seq, **parts},
                      separators=(",", ":"), ensure_ascii=False).encode()


def decode(data: bytes) -> tuple[str, int, dict[str, dict]]:
    """``(origin, seq, documents by part name)``; ``ValueError`` if ``data`` is not a message."""
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError(f"unknown format {doc.get('format') if isinstance(doc, dict) else None!r}")
        origin, seq = str(doc.pop("origin")), int(doc.pop("seq"))
        doc.pop("format")
    except (TypeError, KeyError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a model-sync message ({type(exc).__name__})") from exc
    except ValueError as exc:
        raise ValueError(f"not a model-sync message ({exc})") from exc
    if not all(isinstance(v, dict) for v in doc.values()):
        raise ValueError("not a model-sync message (a part is not an object)")
    return origin, seq, doc
