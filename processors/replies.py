"""Suggested replies: who receives them, how responses are ranked, the message that is sent.

For each comment the *recipient* is the post author, or for a reply to a comment the author of
that parent comment (:func:`recipient_for`, resolved through a bounded
:class:`CommentDirectory`).  Candidate responses come from the
:class:`~processors.reply_bank.ResponseBank` and are ranked by :func:`suggest`:

* relevance = cosine(comment, response) — for responses with an intent, blended with the
  best cosine between the comment and that intent's example contexts;
* score = relevance + ``prior_weight`` · log(count / max count);
* triggering: responses below ``threshold`` relevance are never shown, so a comment that
  nothing fits gets no suggestions;
* safety: blocklisted responses and sentiment clashes (:mod:`processors.safety`) are dropped;
* no echoes: a comment that itself reads as thanks, congratulations, … is not answered in kind;
* diversity: at most one response per intent cluster and none within ``dup_threshold`` cosine
  of one already chosen.

Examples
--------
>>> import numpy as np
>>> from processors.reply_bank import ReplyEntry
>>> entries = [ReplyEntry("haha", "Haha!", "humour", 5, "seed"),
...            ReplyEntry("hahaha", "Hahaha!", "humour", 5, "seed"),
...            ReplyEntry("so sorry", "So sorry.", "sympathy", 5, "seed")]
>>> m = np.array([[1.0, 0.0], [0.99, 0.14], [0.55, 0.835]], dtype=np.float32)
>>> comment = np.array([1.0, 0.0], dtype=np.float32)
>>> suggest(comment, 0.3, m, entries, threshold=0.5)
[('Haha!', 1.0), ('So sorry.', 0.55)]
>>> suggest(comment, -0.6, m, entries, threshold=0.5)  # a sad comment: no laughing
[('So sorry.', 0.55)]
>>> suggest(np.array([0.0, -1.0], dtype=np.float32), 0.0, m, entries, threshold=0.5)  # nothing fits
[]
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

import numpy as np

from processors.calibration import Calibration
from processors.commenter_history import CommenterHistory
from processors.events import SCHEMA_VERSION, Engagement
from processors.language import script_language
from processors.reply_bank import ReplyEntry, ResponseBank
from processors.safety import clashes

MODEL_VERSION = "ripple-replies-1"
#: intents that make no sense as an echo: a comment that itself reads as thanks gets no "Thanks!"
#: back (but a greeting may be answered with a greeting, a joke with a laugh)
NO_ECHO_INTENTS = frozenset({"thanks", "congratulations", "sympathy", "appreciation", "well_wishes", "apology",
                             "encouragement", "question"})


# -- recipients -------------------------------------------------------------------------
def recipient_for(comment: Engagement, post_author: str | None, parent_comment_author: str | None) -> str | None:
    """Who should see suggestions for ``comment``: the parent comment's author for a reply,
    else the post author; ``None`` when unknown or when that is the commenter themself.

    >>> c = Engagement("comment", "bob", "p1", 0.0, text="Nice!", comment_id="c2")
    >>> recipient_for(c, "alice", None), recipient_for(c, "bob", None)
    ('alice', None)
    >>> r = Engagement("comment", "bob", "p1", 0.0, text="Thanks", comment_id="c3", reply_to="c1")
    >>> recipient_for(r, "alice", "carol"), recipient_for(r, "alice", None)
    ('carol', None)
    """
    recipient = parent_comment_author if comment.reply_to else post_author
    if recipient is None or recipient == comment.user_id:
        return None
    return recipient


class CommentDirectory:
    """Bounded LRU map comment_id → author, to resolve ``reply_to``.  The first author of a
    comment id keeps it: a comment re-published under another user's name does not redirect the
    replies meant for its author.

    >>> d = CommentDirectory(capacity=2)
    >>> d.add("c1", "alice"), d.add("c2", "bob"), d.author_of("c1")
    (True, True, 'alice')
    >>> d.add("c3", "carol"); d.author_of("c2") is None, len(d)  # c2 was least recently used
    True
    (True, 2)
    >>> d.add("c1", "mallory"), d.author_of("c1")  # a hijack: refused
    (False, 'alice')
    """

    def __init__(self, capacity: int = 200_000):
        self.capacity = capacity
        self._authors: OrderedDict[str, str] = OrderedDict()

    def add(self, comment_id: str, author_id: str) -> bool:
        """Remember ``comment_id``'s author; False (nothing changed) if another author has it."""
        known = self._authors.get(comment_id)
        if known is not None and known != author_id:
            return False
        self._authors[comment_id] = author_id
        self._authors.move_to_end(comment_id)
        while len(self._authors) > self.capacity:
            self._authors.popitem(last=False)
        return True

    def author_of(self, comment_id: str | None) -> str | None:
        if comment_id is None or comment_id not in self._authors:
            return None
        self._authors.move_to_end(comment_id)
        return self._authors[comment_id]

    def comment_ids(self) -> list[str]:
        return list(self._authors)

    def peek(self, comment_id: str) -> str | None:
        """``comment_id``'s author, without marking it as recently used."""
        return self._authors.get(comment_id)

    def __len__(self) -> int:
        return len(self._authors)

    def to_dict(self) -> dict:
        return {"capacity": self.capacity, "authors": list(self._authors.items())}

    @classmethod
    def from_dict(cls, d: dict) -> "CommentDirectory":
        out = cls(int(d.get("capacity", 200_000)))
        for cid, author in d.get("authors", []):
            out.add(cid, author)
        return out


# -- ranking ----------------------------------------------------------------------------
def suggest(
    comment_vec: np.ndarray,
    comment_sentiment: float,
    bank_matrix: np.ndarray,
    bank_entries: Sequence[ReplyEntry],
    k: int = 3,
    threshold: float = 0.45,
    *,
    prior_weight: float = 0.03,
    dup_threshold: float = 0.9,
    one_per_intent: bool = True,
    context_sim: Mapping[str, float] | None = None,
    context_weight: float = 0.6,
    echo_threshold: float = 0.6,
    echo_margin: float = 0.1,
    echo_floor: float = 0.5,
    lang: str | None = None,
    entry_langs: np.ndarray | None = None,
) -> list[tuple[str, float]]:
    """Up to ``k`` ``(text, score)`` responses for a comment, best first (see module docs).

    Parameters
    ----------
    comment_vec
        Unit embedding of the comment, shape ``(dim,)``.
    comment_sentiment
        Compound sentiment of the comment in ``[-1, 1]``.
    bank_matrix, bank_entries
        Unit response embeddings ``(n, dim)`` and their entries (``ResponseBank.matrix()``).
    threshold
        Minimum relevance for a response to be shown at all (the triggering threshold).
    prior_weight
        Weight of ``log(count / max count)``; 0 ranks by relevance alone.
    dup_threshold
        A response closer than this (cosine) to one already chosen is dropped.
    one_per_intent
        At most one response per intent cluster.
    context_sim
        Per intent, cosine of the comment to that intent's contexts
        (``ResponseBank.context_similarity``); blended into relevance with ``context_weight``.
    echo_threshold
        When the comment is this close (cosine) to a response of an intent in
        :data:`NO_ECHO_INTENTS`, the comment *is* that speech act (a congratulation, a thank-you)
        and that intent is not suggested back.
    echo_margin, echo_floor
        Also treated as echoes: no-echo intents whose best match is at least ``echo_floor`` and
        within ``echo_margin`` of the comment's closest intent ("Congratulations on the
        marathon, amazing effort!" reads as congratulation *and* encouragement).
    lang, entry_langs
        Only responses in language ``lang`` (``None``: any); ``entry_langs``: the entries'
        languages as an array (``ResponseBank.languages()``), else read from the entries.
    """
    if len(bank_entries) == 0 or k <= 0:
        return []
    cos = bank_matrix @ np.asarray(comment_vec, dtype=np.float32)
    rel = cos.astype(np.float64)
    if context_sim:
        ctx = np.array([context_sim.get(e.cluster, np.nan) if e.cluster else np.nan for e in bank_entries])
        has = ~np.isnan(ctx)
        rel[has] = (1 - context_weight) * rel[has] + context_weight * ctx[has]
    if lang is not None:  # answer in the comment's language
        langs = entry_langs if entry_langs is not None else np.array([e.lang for e in bank_entries])
        rel[langs != lang] = -np.inf
    eligible = np.flatnonzero(rel >= threshold)
    if eligible.size == 0:
        return []
    echoed = _echoed_intents(cos, bank_entries, echo_threshold, echo_margin, echo_floor)
    counts = np.array([max(bank_entries[i].count, 1e-9) for i in eligible])
    score = rel[eligible] + prior_weight * np.log(counts / max(e.count for e in bank_entries))
    picked: list[int] = []
    clusters: set[str] = set()
    for j in np.argsort(-score, kind="stable"):
        i = int(eligible[j])
        entry = bank_entries[i]
        if not entry.safe or clashes(entry.cluster, entry.sentiment, comment_sentiment):
            continue
        if entry.cluster in echoed or (one_per_intent and entry.cluster is not None and entry.cluster in clusters):
            continue
        if picked and float(np.max(bank_matrix[picked] @ bank_matrix[i])) > dup_threshold:
            continue
        picked.append(i)
        if entry.cluster is not None:
            clusters.add(entry.cluster)
        if len(picked) == k:
            break
    pos = {int(i): j for j, i in enumerate(eligible)}
    return [(bank_entries[i].text, round(float(score[pos[i]]), 4)) for i in picked]


def _echoed_intents(cos: np.ndarray, entries: Sequence[ReplyEntry], threshold: float, margin: float,
                    floor: float = 0.5) -> set[str]:
    """No-echo intents the comment itself expresses (by its best cosine to each intent's replies)."""
    best: dict[str, float] = {}
    for c, e in zip(cos.tolist(), entries):
        if e.cluster is not None and c > best.get(e.cluster, -1.0):
            best[e.cluster] = c
    top = max(best.values(), default=-1.0)
    return {i for i, c in best.items()
            if i in NO_ECHO_INTENTS and (c >= threshold or (c >= floor and c >= top - margin))}


# -- the service an agent calls ----------------------------------------------------------
class WaitingForPost:
    """Comments whose post's author is not known yet (the post is still being embedded, or
    arrives later on another topic), kept until a deadline and retried.  Bounded: the oldest
    waiting comment is dropped first.

    >>> w = WaitingForPost(wait_s=5.0, capacity=2)
    >>> c = Engagement("comment", "bob", "p9", 0.0, text="Nice!", comment_id="c1")
    >>> w.add(c, "vec", 0.5, now=0.0)
    >>> w.ready({}.get, now=1.0), len(w)
    ([], 1)
    >>> [(ev.comment_id, author) for ev, _, _, author in w.ready({"p9": "alice"}.get, now=2.0)], len(w)
    ([('c1', 'alice')], 0)
    >>> w.add(c, "vec", 0.5, now=0.0); w.ready({}.get, now=6.0), w.expired
    ([], 1)
    """

    def __init__(self, wait_s: float = 10.0, capacity: int = 10_000):
        self.wait_s = wait_s
        self.capacity = capacity
        self._items: OrderedDict[int, tuple[float, Engagement, object, float]] = OrderedDict()
        self._next = 0
        self.expired = 0

    def __len__(self) -> int:
        return len(self._items)

    def add(self, ev: Engagement, vec, sentiment: float, now: float) -> None:
        self._items[self._next] = (now + self.wait_s, ev, vec, sentiment)
        self._next += 1
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
            self.expired += 1

    def ready(self, author_of, now: float) -> list[tuple[Engagement, object, float, str]]:
        """Waiting comments whose post author ``author_of(post_id)`` now knows; drops expired ones."""
        out = []
        for key, (deadline, ev, vec, sentiment) in list(self._items.items()):
            author = author_of(ev.post_id)
            if author is not None:
                out.append((ev, vec, sentiment, author))
                del self._items[key]
            elif now >= deadline:
                del self._items[key]
                self.expired += 1
        return out


@dataclass(frozen=True)
class ReplyConfig:
    """Ranking knobs for :class:`ReplySuggester` (stored as given)."""

    k: int = 3
    threshold: float = 0.42
    prior_weight: float = 0.03
    dup_threshold: float = 0.9
    one_per_intent: bool = True
    context_weight: float = 0.6
    echo_threshold: float = 0.6
    echo_margin: float = 0.1
    echo_floor: float = 0.5
    learn: bool = True  # learn replies (comments with reply_to) into the bank
    #: a reply counts toward the bank only from a user with this many earlier comments, the first
    #: at least ``min_history_s`` before it (0 and 0: from anyone)
    min_history_comments: int = 0
    min_history_s: float = 0.0

    def calibrated(self, cal: Calibration) -> "ReplyConfig":
        """These knobs, stated on the reference model's cosine scale, on the scale of the model
        ``cal`` was measured on (:mod:`processors.calibration`)."""
        return replace(self, threshold=cal.to_model(self.threshold), prior_weight=self.prior_weight * cal.scale,
                       dup_threshold=cal.to_model(self.dup_threshold), echo_threshold=cal.to_model(self.echo_threshold),
                       echo_floor=cal.to_model(self.echo_floor),
                       echo_margin=self.echo_margin * cal.slope_at(self.echo_floor))


class ReplySuggester:
    """Bank + directory + ranking, driven one comment at a time (no broker, no model inside).

    The caller embeds the comment and scores its sentiment (batched, off the event loop),
    then calls :meth:`on_comment`.  After it, :meth:`ResponseBank.pending_texts` lists the
    responses to embed (newly admitted learned replies).
    """

    def __init__(
        self,
        bank: ResponseBank,
        config: ReplyConfig = ReplyConfig(),
        directory: CommentDirectory | None = None,
        model_version: str = MODEL_VERSION,
        by_language: Mapping[str, ReplyConfig] | None = None,
    ):
        self.bank = bank
        self.config = config
        #: the knobs for comments in a language whose cosines sit on another scale (else ``config``)
        self.by_language = dict(by_language or {})
        self.history = CommenterHistory()  # keyed by the bank's user hashes
        self.directory = directory if directory is not None else CommentDirectory()
        self.model_version = f"{model_version}+{bank.version}"
        #: hears of each comment and reply, to share them with other workers
        #: (:class:`processors.reply_state.ReplyState` sets it); ``None``: this worker learns alone
        self.shared = None

    def suggestions(self, comment_vec: np.ndarray, comment_sentiment: float,
                    lang: str | None = None) -> list[tuple[str, float]]:
        """Ranked ``(text, score)`` responses for an embedded comment; ``lang``: only replies in
        that language (:func:`processors.language.script_language`)."""
        cfg = self.by_language.get(lang, self.config)
        mat, entries = self.bank.matrix()
        return suggest(comment_vec, comment_sentiment, mat, entries, cfg.k, cfg.threshold,
                       prior_weight=cfg.prior_weight, dup_threshold=cfg.dup_threshold,
                       one_per_intent=cfg.one_per_intent, context_weight=cfg.context_weight,
                       echo_threshold=cfg.echo_threshold, echo_margin=cfg.echo_margin, echo_floor=cfg.echo_floor,
                       context_sim=self.bank.context_similarity(comment_vec) if cfg.context_weight > 0 else None,
                       lang=lang, entry_langs=self.bank.languages() if lang is not None else None)

    def on_comment(
        self, ev: Engagement, comment_vec: np.ndarray, comment_sentiment: float, post_author: str | None
    ) -> dict | None:
        """Handle one comment event; the suggested-replies message for its recipient, or ``None``.

        Side effects: remembers the comment's author (for later replies to it) and the commenter's
        history and, for a reply to a known comment by someone else from a user with enough
        history (``ReplyConfig.min_history_*``), counts its text toward admission into the bank
        (with that comment's author as a recipient).  ``None`` when the recipient
        is unknown or the commenter, or when no response clears the threshold.
        The message is keyed by ``recipient_id``.
        """
        parent_author = self.directory.author_of(ev.reply_to) if ev.reply_to else None
        if ev.comment_id and self.directory.add(ev.comment_id, ev.user_id) and self.shared is not None:
            self.shared.saw_comment(ev.comment_id, ev.user_id)
        recipient = recipient_for(ev, post_author, parent_author)
        lang = (script_language(ev.text) or "en") if ev.text else None
        items = self.suggestions(comment_vec, comment_sentiment, lang) if recipient is not None else []
        cfg, user = self.config, self.bank.user_hash(ev.user_id)
        established = self.history.established(user, ev.ts, cfg.min_history_comments, cfg.min_history_s)
        self.history.saw(user, ev.ts)
        if self.shared is not None:
            self.shared.saw_commenter(user, ev.ts)
        # only a reply to a comment known here (any worker's), by someone else with a history, counts
        if cfg.learn and established and ev.reply_to and ev.text and parent_author not in (None, ev.user_id):
            self.bank.observe_reply(ev.user_id, ev.text, ev.ts, recipient=parent_author)
            if self.shared is not None:
                self.shared.saw_reply(ev.user_id, ev.text, ev.ts, parent_author)
        if not items:
            return None
        return {
            "schema_version": SCHEMA_VERSION,
            "recipient_id": recipient,
            "comment_id": ev.comment_id,
            "post_id": ev.post_id,
            "suggestions": [{"text": text, "score": score} for text, score in items],
            "model_version": self.model_version,
        }
