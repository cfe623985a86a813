"""The learned reply bank and the comment → author directory, shared by every worker and kept in
snapshots: a shared part (:class:`processors.sync_message.SharedPart`, name ``replies``).

A worker's suggest-replies agent reads only its own partitions of ``comments``.  So that a reply
to a comment read by another worker finds its recipient, and a reply written by users spread
over several workers is counted toward admission once per distinct user, each worker sends what
it saw (comment ids with their authors; replies with the *hashed* user who wrote them and the
hashed author they answered, as the bank keeps them) and adds the others'.  The privacy rules are the bank's: user ids in the bank
are keyed hashes, a learned reply is suggested only after ``min_users`` distinct users wrote it,
and both the bank and the directory stay bounded.

It also shares each commenter's history (hashed user → first comment seen, comments), which a
user needs before their replies count (:class:`processors.commenter_history.CommenterHistory`).

Snapshot keys: ``c:<comment id>`` (the author), ``r:<bank key>`` (a learned entry's or a
candidate's count and hashed users) and ``h:<user hash>`` (a commenter's history).

>>> from processors.replies import ReplySuggester
>>> from processors.reply_bank import ResponseBank
>>> here, there = ReplySuggester(ResponseBank(min_users=2)), ReplySuggester(ResponseBank(min_users=2))
>>> sh, st = ReplyState(here), ReplyState(there)
>>> sh.saw_comment("c1", "alice")
>>> sh.saw_reply("bob", "Congrats on the new job!", 5.0, "alice")
>>> for doc in sh.take_docs():
...     st.apply_doc(doc)
>>> there.directory.author_of("c1"), there.bank.candidate_count
('alice', 1)
>>> _ = there.bank.observe_reply("carol", "congrats on the new job", 6.0)  # the second distinct user
>>> [e.text for e in there.bank.entries() if e.source == "learned"]
['Congrats on the new job']
"""

from __future__ import annotations

import json
from typing import Iterable, Mapping

from processors.replies import ReplySuggester
from processors.sync_message import MAX_MESSAGE_BYTES


class ReplyState:
    """The bank and directory of ``suggester``, as deltas to share and snapshots to keep; attaches
    itself as ``suggester.shared``, which reports each comment and reply it sees."""

    name = "replies"
    key_prefix = "\x01"  # snapshot keys: never a post id (control characters are refused in ids)

    def __init__(self, suggester: ReplySuggester):
        self.bank, self.directory, self.history = suggester.bank, suggester.directory, suggester.history
        self.comments: dict[str, str] = {}
        self.commenters: dict[str, list[float]] = {}  # user hash → [first seen, comments] this interval
        self.replies: list[list] = []
        self.changed: set[str] = set()
        suggester.shared = self

    # -- this worker's deltas -----------------------------------------------------------
    def saw_comment(self, comment_id: str, author_id: str) -> None:
        self.comments[comment_id] = author_id
        self.changed.add("c:" + comment_id)

    def saw_commenter(self, user: str, ts: float) -> None:
        """A comment by ``user`` (a bank hash) at ``ts``."""
        state = self.commenters.get(user)
        if state is None:
            self.commenters[user] = [ts, 1.0]
        else:
            state[0], state[1] = min(state[0], ts), state[1] + 1.0
        self.changed.add("h:" + user)

    def saw_reply(self, user_id: str, text: str, ts: float, recipient: str | None = None) -> None:
        key = self.bank.learnable_key(text)
        if key is not None:
            h = self.bank.user_hash
            self.replies.append([h(user_id), text, ts, None if recipient is None else h(recipient)])
            self.changed.add("r:" + key)

    def take_docs(self, max_bytes: int = MAX_MESSAGE_BYTES) -> list[dict]:
        comments, replies, commenters = list(self.comments.items()), self.replies, list(self.commenters.items())
        self.comments, self.replies, self.commenters = {}, [], {}
        per = max(1, max_bytes // 200)  # entries of a document: ids and short texts, ~200 bytes at most
        docs = []
        for i in range(0, max(len(comments), len(replies), len(commenters)), per):
            docs.append({"comments": dict(comments[i:i + per]), "replies": replies[i:i + per],
                         "commenters": dict(commenters[i:i + per])})
        return docs

    # -- other workers' deltas ----------------------------------------------------------
    def apply_doc(self, doc: dict) -> None:
        try:
            comments = [(str(c), str(a)) for c, a in doc["comments"].items()]
            replies = [(str(h), str(text), float(ts), None if to is None else str(to)) for h, text, ts, to in doc["replies"]]
            commenters = [(str(u), float(first), float(n)) for u, (first, n) in doc.get("commenters", {}).items()]
        except (TypeError, KeyError, ValueError, AttributeError) as exc:
            raise ValueError(f"not reply deltas ({type(exc).__name__})") from exc
        for comment_id, author in comments:
            if self.directory.add(comment_id, author):
                self.changed.add("c:" + comment_id)
        for user, first, n in commenters:  # each comment is read by one worker: the counts add
            self.history.saw(user, first, n)
            self.changed.add("h:" + user)
        for user, text, ts, recipient in replies:
            self.bank.observe_hashed(user, text, ts, recipient)
            key = self.bank.learnable_key(text)
            if key is not None:
                self.changed.add("r:" + key)

    # -- snapshots ----------------------------------------------------------------------
    def all_keys(self) -> set[str]:
        return ({"c:" + c for c in self.directory.comment_ids()} | {"r:" + k for k in self.bank.learned_keys()}
                | {"h:" + u for u in self.history.users()})

    def snapshot(self, keys: Iterable[str]) -> dict[str, bytes | None]:
        out: dict[str, bytes | None] = {}
        for key in keys:
            kind, _, name = key.partition(":")
            if kind == "c":
                author = self.directory.peek(name)
                out[key] = None if author is None else json.dumps({"author": author}, ensure_ascii=False).encode()
            elif kind == "r":
                state = self.bank.entry_state(name)
                out[key] = None if state is None else json.dumps(state, ensure_ascii=False).encode()
            elif kind == "h":
                seen = self.history.state(name)
                out[key] = None if seen is None else json.dumps({"first": seen[0], "comments": seen[1]}).encode()
        return out

    def restore(self, records: Mapping[str, bytes]) -> int:
        restored = 0
        for key, data in records.items():
            kind, _, name = key.partition(":")
            try:
                doc = json.loads(data)
                if kind == "c":
                    self.directory.add(name, str(doc["author"]))
                elif kind == "r":
                    self.bank.restore_entry(name, doc)
                elif kind == "h":
                    self.history.restore(name, float(doc["first"]), float(doc["comments"]))
                else:
                    continue
                restored += 1
            except (ValueError, TypeError, KeyError, AttributeError):
                continue
        return restored
