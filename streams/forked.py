"""Ranking in a forked child process: the engagement engine's recommendations scored on another core.

The worker's event loop runs on one core; ranking is about half of what it does in a drain (see
docs/benchmarks.md), and it reads state the next batch then changes (profiles, catalog, factor and
co-engagement models).  ``os.fork`` hands a child a copy-on-write snapshot of all of it as it is at
the fork, for ~5 ms, with no copying or serialising of the state and no second copy kept up to
date.  The child ranks the given users with that snapshot, writes their messages (already JSON)
to a pipe and exits; the worker folds the next batch meanwhile and reads the pipe from its event
loop.  The messages are those :meth:`Recommender.recommendations` would give in the worker at the
fork (``rec_id`` and ``generated_at`` aside).

Ranking only reads state, except caches that die with the child and the throttle's retries
(users whose history is not all embedded yet), which the child reports back for the worker to
apply.  The factor model's queued updates are applied before the fork, in the worker, so they
are applied at the same moment as without a child.

A child that fails or dies is reported as :class:`ForkFailed`, and so is one that runs past its
time limit (it is killed); the caller then ranks in its own thread.  Linux (``os.fork``) only;
:func:`available` says whether it can be used.
"""

from __future__ import annotations

import asyncio
import fcntl
import gc
import math
import os
import pickle
import signal
import time
from dataclasses import dataclass
from typing import Sequence

from processors.profiles import UserProfile
from processors.recommender import SCORING_CHUNK, Recommender
from streams import wire

#: the pipe's buffer: a child writing more than this waits for the worker's event loop to read
PIPE_BYTES = 1 << 20


class ForkFailed(RuntimeError):
    """The child died, wrote something unreadable, or ran past its time."""


@dataclass
class Ranked:
    docs: list[bytes]  # each user's message, JSON, in the order asked
    retry: list[str]  # users whose history was not all embedded yet: the throttle retries them
    elapsed_s: float  # the child's ranking time


def available() -> bool:
    return hasattr(os, "fork") and hasattr(fcntl, "F_SETPIPE_SZ")


class ForkedRanker:
    """At most one child at a time: :meth:`rank` forks it and returns its result's future.

    It also keeps what sizes and guards the children: the time scoring takes per user (a moving
    average of what is reported to :meth:`observe`, the children's own times included) and the
    failures in a row, of forks and of children (after ``max_failures`` of them, :attr:`usable`
    is False).
    """

    #: a child's time limit: this much, plus four times its users' expected scoring time
    timeout_s = 10.0
    max_failures = 3

    def __init__(self, recommender: Recommender, cost_per_user_s: float = 0.0005):
        self.recommender = recommender
        self.cost_per_user_s = cost_per_user_s  # a conservative start: ~2× a 2,000-post catalog's
        self.forks = 0
        self.failures = 0  # in a row
        self.child: int | None = None  # the newest child's pid
        self._running: set[int] = set()  # children whose result has not been read
        self._zombies: list[int] = []

    @property
    def usable(self) -> bool:
        return self.failures < self.max_failures

    def share(self, due: int, budget_s: float) -> int:
        """How many of ``due`` users a child scores within ``budget_s`` (0: all), in whole
        chunks of ``SCORING_CHUNK``, at least one."""
        if not budget_s:
            return due
        return min(due, max(1, math.ceil(budget_s / self.cost_per_user_s / SCORING_CHUNK)) * SCORING_CHUNK)

    def observe(self, elapsed_s: float, users: int) -> None:
        """``users`` were scored in ``elapsed_s`` (by a child or by the caller itself)."""
        if users:
            self.cost_per_user_s += 0.3 * (elapsed_s / users - self.cost_per_user_s)

    def rank(self, profiles: Sequence[UserProfile]) -> asyncio.Future:
        """Fork a child that ranks ``profiles``; the future gives a :class:`Ranked` (or raises
        :class:`ForkFailed`).  Call from the event loop's thread."""
        self._reap()
        flush = getattr(self.recommender.factors, "flush", None)  # queued updates: applied here, as a score would
        if flush is not None:
            flush()
        r = w = None
        try:
            r, w = os.pipe()
            try:
                fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
            except OSError:  # above the system's pipe-max-size: the default buffer, the child waits more
                pass
            pid = os.fork()
        except OSError as exc:
            for fd in (r, w):
                if fd is not None:
                    os.close(fd)
            self.failures += 1
            raise ForkFailed(f"no ranking child: {exc}") from exc
        if pid == 0:  # the child: never returns
            _child(w, self.recommender, profiles)
        os.close(w)
        self.child = pid
        self.forks += 1
        self._running.add(pid)
        timeout = self.timeout_s + 4 * len(profiles) * self.cost_per_user_s
        return asyncio.ensure_future(self._collect(pid, r, timeout))

    async def _collect(self, pid: int, fd: int, timeout_s: float) -> Ranked:
        """The child's result; counts the failures in a row."""
        try:
            ranked = await self._read(pid, fd, timeout_s)
        except ForkFailed:
            self.failures += 1
            raise
        self.failures = 0
        return ranked

    async def _read(self, pid: int, fd: int, timeout_s: float) -> Ranked:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        chunks: list[bytes] = []
        os.set_blocking(fd, False)

        def readable() -> None:
            try:
                while True:
                    data = os.read(fd, PIPE_BYTES)
                    if not data:  # EOF: the child closed its end (it is exiting)
                        break
                    chunks.append(data)
            except BlockingIOError:
                return
            except OSError as exc:
                if not done.done():
                    done.set_exception(exc)
            loop.remove_reader(fd)
            if not done.done():
                done.set_result(None)

        loop.add_reader(fd, readable)
        try:
            await asyncio.wait_for(done, timeout_s)
        except BaseException as exc:  # a timeout, a read error, or cancelled: the child is not waited for
            _kill(pid)
            if isinstance(exc, Exception):
                raise ForkFailed(f"ranking child {pid}: {type(exc).__name__}") from exc
            raise
        finally:
            loop.remove_reader(fd)
            os.close(fd)
            self._running.discard(pid)
            self._zombies.append(pid)
            self._reap()
        try:
            status, payload = pickle.loads(b"".join(chunks))
        except Exception as exc:  # cut short: the child died mid-write
            raise ForkFailed(f"ranking child {pid}: unreadable result ({type(exc).__name__})") from None
        if status != "ok":
            raise ForkFailed(f"ranking child {pid}: {payload}")
        return Ranked(*payload)

    def _reap(self) -> None:
        """Collect children that have exited (they exit right after writing: never waited for)."""
        left = []
        for pid in self._zombies:
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == 0:
                    left.append(pid)
            except ChildProcessError:
                pass
        self._zombies = left

    def close(self) -> None:
        """Kill the children whose result is still awaited, wait for every child to exit."""
        for pid in self._running:
            _kill(pid)
        for pid in (*self._running, *self._zombies):
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        self._running.clear()
        self._zombies = []


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _child(w: int, recommender: Recommender, profiles: Sequence[UserProfile]) -> None:
    """Rank, write ``pickle((status, payload))`` to ``w``, exit without running any cleanup of
    the parent's (``os._exit``: no atexit handlers, no flushing of copied buffers)."""
    code = 1
    try:
        # the worker's descriptors (its sockets: Kafka, the metrics port) are not the child's to keep
        # open: a worker killed while a child runs must not leave its port taken
        os.closerange(3, w)
        os.closerange(w + 1, max(w + 1, os.sysconf("SC_OPEN_MAX")))
        signal.set_wakeup_fd(-1)  # the worker's event loop listens on that one
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        gc.disable()  # short-lived: a collection would only copy pages
        retry: list[str] = []
        recommender.throttle.retry = retry.append  # this copy's throttle dies with the child
        t0 = time.perf_counter()
        docs = [wire.dumps(d) for d in recommender.recommendations(profiles)]
        out = pickle.dumps(("ok", (docs, retry, time.perf_counter() - t0)), protocol=pickle.HIGHEST_PROTOCOL)
        code = 0
    except BaseException as exc:  # noqa: BLE001 - reported to the worker, which ranks itself
        out = pickle.dumps(("error", f"{type(exc).__name__}: {exc}"[:300]))
    try:
        view = memoryview(out)
        while view:
            view = view[os.write(w, view):]
        os.close(w)
    finally:
        os._exit(code)
