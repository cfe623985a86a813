"""The response bank: curated seed replies plus replies learned from the stream, k-anonymously.

Seed replies (``processors/data/seed_replies.json``) carry an *intent* (thanks, sympathy, …)
and a few example *contexts* per intent.  Learned replies enter only when at least
``min_users`` distinct users have written the same normalised reply, so nothing one person
wrote is ever suggested to anyone else.  Before admission a candidate is a normalised text
plus a set of salted user-id hashes, held in a bounded LRU with a TTL; texts that carry
abuse or personal data (URLs, e-mails, @mentions, numbers) are never held at all.  Learned
replies are shown in normalised form (lower-cased, punctuation dropped), never as typed.

Counts are priors: a seed starts at ``seed_count``; every distinct user who writes an entry's
text adds one (up to ``max_users_tracked`` users remembered per entry).

Embeddings are not computed here: :meth:`ResponseBank.pending_texts` lists the texts that
need a vector, :meth:`ResponseBank.set_vectors` caches them, and
:meth:`ResponseBank.matrix` returns the stacked unit vectors of every embedded entry.

Examples
--------
>>> bank = ResponseBank(min_users=2)
>>> bank.observe_reply("u1", "Nailed it!!", ts=0.0), bank.observe_reply("u1", "nailed it", ts=1.0)
([], [])
>>> [(e.text, e.count, e.source) for e in bank.observe_reply("u2", "NAILED IT", ts=2.0)]
[('Nailed it', 2.0, 'learned')]
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from processors.language import script_language
from processors.protocols import Embedder
from processors.reply_texts import SeedSet, display_text, load_seed, normalise
from processors.safety import is_safe_reply
from processors.sentiment_protocol import SentimentAnalyzer

@dataclass
class ReplyEntry:
    """One suggestible reply.  ``cluster`` is the intent used for diversity and safety rules:
    the seed intent, or for a learned reply the intent of the nearest seed centroid once
    embedded (``None`` when nothing is close)."""

    key: str
    text: str
    intent: str | None
    count: float
    source: str  # "seed" | "learned"
    sentiment: float = 0.0
    cluster: str | None = None
    safe: bool = True
    last_ts: float = 0.0
    lang: str = ""  # the language its script says (processors.language); set from the text when empty

    def __post_init__(self) -> None:
        if self.cluster is None:
            self.cluster = self.intent
        if not self.lang:
            self.lang = script_language(self.text) or "en"


@dataclass
class _Candidate:
    users: set[str] = field(default_factory=set)
    last_ts: float = 0.0
    recipients: set[str] = field(default_factory=set)  # hashed authors of the comments it answered


class ResponseBank:
    """Seed + learned replies with k-anonymous admission and an embedding cache.

    Parameters
    ----------
    seed
        Curated replies and contexts (default: the shipped seed set).
    min_users
        Distinct users needed before a learned reply is admitted (k-anonymity).
    min_recipients
        Distinct recipients (authors of the comments it answered) needed too, so a few accounts
        replying to one victim cannot teach the bank; only uses with a known recipient count.
    salt
        Key of the user-id hash; keep it secret and stable across restarts.
    sentiment
        Scores each entry's own sentiment (used by the clash rule for learned replies).
    seed_count
        Prior count of every seed reply.
    max_candidates, candidate_ttl_s
        Bounds on not-yet-admitted texts: LRU size and idle time before they are forgotten.
    max_learned
        Learned entries kept (least recently used are dropped first; seeds are never dropped).
    max_users_tracked
        User hashes remembered per admitted entry (bounds the growth of its count).
    max_words
        Longer replies are not learned (long replies are personal).
    cluster_min_cos
        A learned reply joins the intent whose seed centroid is at least this close.
    """

    def __init__(
        self,
        seed: SeedSet | None = None,
        *,
        min_users: int = 3,
        min_recipients: int = 1,
        salt: bytes = b"ripple-replies",
        sentiment: SentimentAnalyzer | None = None,
        seed_count: float = 5.0,
        max_candidates: int = 50_000,
        candidate_ttl_s: float = 30 * 24 * 3600.0,
        max_learned: int = 5_000,
        max_users_tracked: int = 256,
        max_words: int = 12,
        cluster_min_cos: float = 0.6,
    ):
        if min_users < 1:
            raise ValueError("min_users must be >= 1")
        self.seed = seed if seed is not None else load_seed()
        self.min_users = min_users
        self.min_recipients = min_recipients
        self.salt = salt
        self.sentiment = sentiment
        self.seed_count = seed_count
        self.max_candidates = max_candidates
        self.candidate_ttl_s = candidate_ttl_s
        self.max_learned = max_learned
        self.max_users_tracked = max_users_tracked
        self.max_words = max_words
        self.cluster_min_cos = cluster_min_cos
        self.version = self.seed.version
        self._entries: dict[str, ReplyEntry] = {}  # key → entry, seeds first, learned in LRU order
        self._users: dict[str, set[str]] = {}  # key → user hashes that wrote it
        self._candidates: OrderedDict[str, _Candidate] = OrderedDict()
        self._vectors: dict[str, np.ndarray] = {}  # text → unit vector (entries and contexts)
        self._cache: tuple[np.ndarray, list[ReplyEntry]] | None = None
        self._ctx_cache: tuple[np.ndarray, np.ndarray, list[str]] | None = None
        self._langs: tuple[list[ReplyEntry], np.ndarray] | None = None  # matrix() entries → their languages
        self._contexts = {c for cs in self.seed.contexts.values() for c in cs}
        for intent, replies in self.seed.replies.items():
            for text in replies:
                key = normalise(text)
                if key and key not in self._entries:
                    self._entries[key] = ReplyEntry(key, text, intent, float(seed_count), "seed",
                                                    self._score(text), cluster=intent, safe=is_safe_reply(text))
        self._pending: dict[str, None] = dict.fromkeys([e.text for e in self._entries.values()]
                                                       + [c for cs in self.seed.contexts.values() for c in cs])

    # -- learning -----------------------------------------------------------------------
    def observe_reply(self, user_id: str, reply_text: str, ts: float, recipient: str | None = None) -> list[ReplyEntry]:
        """Count one use of ``reply_text`` by ``user_id`` (answering ``recipient``, if known);
        the entries admitted by it (0 or 1).

        Repeats by the same user never count twice.  A newly admitted entry has no vector
        yet: embed :meth:`pending_texts` and hand the vectors to :meth:`set_vectors`.
        """
        return self.observe_hashed(self.user_hash(user_id), reply_text, ts,
                                   None if recipient is None else self.user_hash(recipient))

    def learnable_key(self, reply_text: str) -> str | None:
        """The bank key of ``reply_text`` if it may be learnt (no personal data, safe, short: the
        text as written and as the bank would show it)."""
        key = normalise(reply_text)
        if not key or not is_safe_reply(reply_text, max_words=self.max_words):  # personal data included
            return None
        return key if is_safe_reply(display_text(key), max_words=self.max_words) else None

    def observe_hashed(self, user: str, reply_text: str, ts: float, recipient: str | None = None) -> list[ReplyEntry]:
        """:meth:`observe_reply` for a user already hashed (:meth:`user_hash`), e.g. seen by another worker."""
        key = self.learnable_key(reply_text)
        if key is None:
            return []
        text = display_text(key)
        entry = self._entries.get(key)
        if entry is not None:
            self._count_use(entry, user, ts)
            return []
        self._expire(ts)
        cand = self._candidates.get(key)
        if cand is None:
            cand = self._candidates[key] = _Candidate()
            while len(self._candidates) > self.max_candidates:
                self._candidates.popitem(last=False)
        else:
            self._candidates.move_to_end(key)
        cand.users.add(user)
        if recipient is not None and recipient != user:
            cand.recipients.add(recipient)
        cand.last_ts = max(cand.last_ts, ts)
        if len(cand.users) < self.min_users or (self.min_recipients > 1 and len(cand.recipients) < self.min_recipients):
            return []
        del self._candidates[key]
        entry = ReplyEntry(key, text, None, float(len(cand.users)), "learned", self._score(text), last_ts=ts)
        self._entries[key] = entry
        self._users[key] = cand.users
        self._pending[text] = None
        self._evict_learned()
        self._cache = None
        return [entry]

    def _count_use(self, entry: ReplyEntry, user: str, ts: float) -> None:
        users = self._users.setdefault(entry.key, set())
        if user not in users and len(users) < self.max_users_tracked:
            users.add(user)
            entry.count += 1
        entry.last_ts = max(entry.last_ts, ts)
        if entry.source == "learned":  # keep learned entries in least-recently-used order
            self._entries[entry.key] = self._entries.pop(entry.key)
            self._cache = None

    def _expire(self, now: float) -> None:
        while self._candidates:
            key, cand = next(iter(self._candidates.items()))
            if now - cand.last_ts <= self.candidate_ttl_s:
                break
            del self._candidates[key]

    def _evict_learned(self) -> None:
        learned = [k for k, e in self._entries.items() if e.source == "learned"]
        for key in learned[: max(0, len(learned) - self.max_learned)]:
            entry = self._entries.pop(key)
            self._users.pop(key, None)
            if entry.text not in self._contexts:  # a context may share the text
                self._vectors.pop(entry.text, None)
                self._pending.pop(entry.text, None)

    def user_hash(self, user_id: str) -> str:
        """The keyed hash the bank keeps instead of a user id."""
        return hashlib.blake2b(user_id.encode("utf-8"), key=self.salt[:64], digest_size=8).hexdigest()

    def _score(self, text: str) -> float:
        return float(self.sentiment.score(text)) if self.sentiment is not None else 0.0

    # -- embeddings ---------------------------------------------------------------------
    def pending_texts(self) -> list[str]:
        """Entry and context texts that have no cached vector yet (seeds first); cheap to call."""
        return list(self._pending)

    def set_vectors(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Cache unit vectors for ``texts`` (rows of ``vectors``); unknown texts are ignored."""
        vectors = np.asarray(vectors, dtype=np.float32)
        for text, vec in zip(texts, vectors):
            if text in self._pending or text in self._vectors:
                norm = float(np.linalg.norm(vec))
                self._vectors[text] = vec / norm if norm > 0 else vec
                self._pending.pop(text, None)
        self._assign_clusters()
        self._cache = self._ctx_cache = None

    def embed_pending(self, embedder: Embedder, batch_size: int = 64) -> int:
        """Embed every pending text with ``embedder`` (blocking); how many were embedded."""
        pending = self.pending_texts()
        for i in range(0, len(pending), batch_size):
            chunk = pending[i : i + batch_size]
            self.set_vectors(chunk, embedder.embed(chunk))
        return len(pending)

    def _assign_clusters(self) -> None:
        learned = [e for e in self._entries.values() if e.source == "learned" and e.cluster is None and e.text in self._vectors]
        if not learned:
            return
        names, cents = [], []
        for intent in self.seed.replies:
            vecs = [self._vectors[e.text] for e in self._entries.values() if e.intent == intent and e.text in self._vectors]
            if vecs:
                c = np.mean(vecs, axis=0)
                names.append(intent)
                cents.append(c / max(float(np.linalg.norm(c)), 1e-12))
        if not names:
            return
        sims = np.stack([self._vectors[e.text] for e in learned]) @ np.stack(cents).T
        for entry, row in zip(learned, sims):
            j = int(np.argmax(row))
            if row[j] >= self.cluster_min_cos:
                entry.cluster = names[j]

    def matrix(self) -> tuple[np.ndarray, list[ReplyEntry]]:
        """``(vectors, entries)`` of every embedded entry, rows aligned (cached)."""
        if self._cache is None:
            entries = [e for e in self._entries.values() if e.text in self._vectors]
            dim = next(iter(self._vectors.values())).shape[0] if self._vectors else 0
            mat = np.stack([self._vectors[e.text] for e in entries]) if entries else np.zeros((0, dim), np.float32)
            self._cache = (mat, entries)
        return self._cache

    def languages(self) -> np.ndarray:
        """The language of each row of :meth:`matrix` (built once per matrix)."""
        entries = self.matrix()[1]
        if self._langs is None or self._langs[0] is not entries:
            self._langs = (entries, np.array([e.lang for e in entries]))
        return self._langs[1]

    def context_similarity(self, comment_vec: np.ndarray) -> dict[str, float]:
        """Per intent, the highest cosine between ``comment_vec`` and its embedded contexts."""
        if self._ctx_cache is None:
            rows = [(i, self._vectors[c]) for i, cs in enumerate(self.seed.contexts.values()) for c in cs
                    if c in self._vectors]
            names = list(self.seed.contexts)
            mat = np.stack([v for _, v in rows]) if rows else np.zeros((0, 0), np.float32)
            self._ctx_cache = (mat, np.array([i for i, _ in rows], dtype=np.int64), names)
        mat, owner, names = self._ctx_cache
        if mat.shape[0] == 0:
            return {}
        best = np.full(len(names), -np.inf)
        np.maximum.at(best, owner, mat @ np.asarray(comment_vec, dtype=np.float32))
        return {names[i]: float(b) for i, b in enumerate(best) if np.isfinite(b)}

    # -- inspection and state -----------------------------------------------------------
    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> list[ReplyEntry]:
        return list(self._entries.values())

    @property
    def candidate_count(self) -> int:
        return len(self._candidates)

    def learned_keys(self) -> list[str]:
        """Keys with learned state: learned entries, seeds with users counted, candidates."""
        return [k for k, e in self._entries.items() if e.source == "learned" or k in self._users] + list(self._candidates)

    def entry_state(self, key: str) -> dict | None:
        """The learned state of one key: an entry's count and users, or a candidate's (``None``:
        nothing learnt; the seed text itself is not included)."""
        entry, cand = self._entries.get(key), self._candidates.get(key)
        if entry is not None and (entry.source == "learned" or key in self._users):
            return {"source": entry.source, "count": entry.count, "last_ts": entry.last_ts,
                    "users": sorted(self._users.get(key, ()))}
        if cand is not None:
            return {"source": "candidate", "last_ts": cand.last_ts, "users": sorted(cand.users),
                    "recipients": sorted(cand.recipients)}
        return None

    def restore_entry(self, key: str, state: dict) -> None:
        """Put back what :meth:`entry_state` gave (another worker's, or a snapshot's)."""
        users, last_ts, source = {str(u) for u in state["users"]}, float(state["last_ts"]), state["source"]
        if source == "candidate":
            if key not in self._entries and self.learnable_key(display_text(key)) == key:
                self._candidates[key] = _Candidate(users, last_ts, {str(r) for r in state.get("recipients", ())})
                while len(self._candidates) > self.max_candidates:
                    self._candidates.popitem(last=False)
            return
        entry = self._entries.get(key)
        if entry is None:
            if source != "learned" or self.learnable_key(display_text(key)) != key:
                return
            text = display_text(key)
            entry = self._entries[key] = ReplyEntry(key, text, None, 0.0, "learned", self._score(text))
            self._pending[text] = None
            self._candidates.pop(key, None)
        entry.count, entry.last_ts = float(state["count"]), last_ts
        self._users[key] = users
        self._evict_learned()
        self._cache = None

    def to_dict(self) -> dict:
        """Learned state as JSON-able data (seeds and vectors are not included)."""
        return {
            "seed_version": self.version,
            "min_users": self.min_users,
            "seed_counts": {k: e.count for k, e in self._entries.items() if e.source == "seed" and e.count != self.seed_count},
            "learned": [[e.key, e.count, e.sentiment, e.last_ts] for e in self._entries.values() if e.source == "learned"],
            "users": {k: sorted(u) for k, u in self._users.items()},
            "candidates": [[k, c.last_ts, sorted(c.users)] for k, c in self._candidates.items()],
        }

    def load_state(self, d: dict) -> None:
        """Restore what :meth:`to_dict` wrote (vectors must be recomputed: see :meth:`pending_texts`)."""
        for key, count in d.get("seed_counts", {}).items():
            if key in self._entries:
                self._entries[key].count = float(count)
        for key, count, sentiment, last_ts in d.get("learned", []):
            self._entries[key] = ReplyEntry(key, display_text(key), None, float(count), "learned", float(sentiment),
                                            last_ts=float(last_ts))
            self._pending[display_text(key)] = None
        self._users = {k: set(u) for k, u in d.get("users", {}).items() if k in self._entries}
        self._candidates = OrderedDict((k, _Candidate(set(u), float(t))) for k, t, u in d.get("candidates", []))
        self._cache = None
