"""Receiving streams (pure): de-duplication, reassembly, gap detection, NACKs, give-ups.

Every subscriber owns one `Receiver` (so does every relay, for the link from each
publisher to it). The shell feeds it authenticated datagrams with a monotonic `now` and
the upstream they came from (`via`: a relay, or for a relay the publisher), sleeps until
`next_deadline()`, and calls `on_timer(now)`, which returns the NACKs to send. Complete
messages come back from `datagram()` as a `Delivery`; losses it gave up on collect in
`lost` for the shell to count (and act on: fetch a map over HTTP).

Theory of operation. A stream is (sender, topic, epoch); its messages are numbered from 1.

- Each topic has a **deadline** (`policy(topic)`): how long a missing message is worth
  recovering. 0 means "newest wins": no recovery, a message older than the newest seen
  is dropped as a duplicate (heartbeats, beacons).
- A stream that began after the receiver started, first heard within its first
  `join_slack` messages, is received from seq 1 (a lost first message is recovered);
  otherwise it is joined at the first seq heard (a relay that becomes one of a
  publisher's paths mid-stream does not ask for the stream's whole past). Likewise a
  stream silent for `rejoin_after` that comes back more than `join_slack` ahead is
  joined anew (lost, reason "rejoined": a consumer fetches what matters over HTTP).
- Recovering streams keep `base` (every seq <= base is settled: delivered, or given up),
  `done` (settled seqs above base, out of order) and `pending` (messages partly here, or
  known to exist: a gap in seq, or one a STATE note revealed). A datagram at or below
  base or in `done`, or a part already held, is a duplicate: multi-path makes most
  datagrams arrive twice, and replays within `max_age` (the shell's check) end here.
- Messages are delivered as soon as whole, not in order (latency over order; what needs
  order numbers its own payload, like the purge journal).
- **Gaps.** A seq above the highest seen makes every seq between it and the highest
  pending (whole: all parts wanted); inside a message, parts below the highest part
  seen are holes, and the parts after it become wanted once the message stalls for
  `tail_delay` or a later message exists. A missing tail of the stream (nothing after
  it to reveal the gap) is revealed by the sender's STATE notes.
- **NACKs.** A pending message's first NACK goes `nack_delay` after the gap is seen (the
  other path's copy usually fills it first), then again after `nack_interval`, x1.5 per
  try up to `nack_max_interval`, at most `nack_tries` times without progress, each to
  the next upstream this stream was heard from lately (`via_fresh`: a relay that died
  is not asked; one that lacks it, then another that has it). A big message streams
  in while it is recovered: a new hole is asked for `nack_delay` after it shows
  whatever the back-off, and a NACK that brought parts starts the back-off and the
  tries afresh. A message still incomplete at its deadline is given up (`lost`,
  reason "deadline") and settled.
- **Epochs.** A newer epoch replaces the stream (a restarted sender; what was pending is
  lost, reason "restarted"); an older one is refused ("stale_epoch") unless the stream
  has been silent for `silent_after` (a sender whose clock stepped back is not locked out).
- **Bounds.** Streams: `max_streams`, least recently heard evicted. Seqs tracked per
  stream: `window`; a seq further ahead resynchronises the stream (pending lost,
  reason "resync"). Message size: `max_message`. Bytes of incomplete messages:
  `sender_bytes` per sender and `pending_bytes` in all; past them the oldest
  incomplete message (of that sender, else anyone's) is given up (reason "memory").
  Incomplete messages of no-recovery topics are dropped after `hole_timeout`.

Input contract: `datagram()` and `state()` never raise on what the network sends; they
return a verdict (a counter name) for every datagram. Time is passed in; nothing here
reads a clock or does I/O.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from typing import NamedTuple

import msgspec

from .envelope import Datagram, Want

Via = Hashable
Key = tuple[str, str]  # (sender, topic)


class Limits(msgspec.Struct, frozen=True):
    max_streams: int = 65536
    window: int = 4096
    max_message: int = 16 * 2**20
    max_incomplete: int = 65536
    join_slack: int = 64  # a stream first heard past this seq is joined there, not recovered from 1
    rejoin_after: float = 1.0  # silent this long, then more than join_slack ahead: joined anew
    via_fresh: float = 1.0  # NACKs go to upstreams heard this recently (any, if none was)
    pending_bytes: int = 64 * 2**20
    sender_bytes: int = 32 * 2**20
    hole_timeout: float = 2.0
    nack: bool = True
    nack_delay: float = 0.01
    tail_delay: float = 0.05
    nack_interval: float = 0.04
    nack_backoff: float = 1.5
    nack_max_interval: float = 1.0
    nack_tries: int = 10
    silent_after: float = 30.0


class Delivery(NamedTuple):
    sender: str
    topic: str
    epoch: int
    seq: int
    sent_at: float
    body: bytes
    parts: int
    recovered: bool  # some part came after we NACKed it


class NackOut(NamedTuple):
    via: Via
    sender: str
    topic: str
    epoch: int
    wants: list[Want]


class Lost(NamedTuple):
    sender: str
    topic: str
    seq: int
    reason: str  # deadline | memory | resync | rejoined | restarted | evicted | hole


class _Msg:
    __slots__ = (
        "parts", "size", "got", "bodies", "nbytes", "first", "last", "top", "give_up", "next_nack", "tries", "due",
        "asks", "progress",
    )  # fmt: skip

    def __init__(self, now: float, give_up: float) -> None:
        self.parts = 0  # 0: known to exist, no part seen
        self.size = 0
        self.got: set[int] = set()
        self.bodies: dict[int, bytes] = {}
        self.nbytes = 0
        self.first = now
        self.last = now
        self.top = -1  # highest part seen
        self.give_up = give_up
        self.next_nack = float("inf")
        self.tries = 0  # NACKs since the last one that brought something
        self.asks = 0  # NACKs in all (which upstream to ask next)
        self.progress = 0  # parts held when we last asked
        self.due = float("inf")  # the time of its one live timer entry


class _Stream:
    __slots__ = ("key", "epoch", "deadline", "base", "highest", "done", "pending", "heard", "vias", "nbytes")

    def __init__(self, key: Key, epoch: int, deadline: float, seq: int, now: float) -> None:
        self.key = key
        self.epoch = epoch
        self.deadline = deadline
        self.base = seq  # settled up to here
        self.highest = seq
        self.done: set[int] = set()
        self.pending: dict[int, _Msg] = {}
        self.heard = now
        self.vias: dict[Via, float] = {}
        self.nbytes = 0


class Receiver:
    def __init__(
        self,
        policy: Callable[[str], float],
        limits: Limits | None = None,
        reassemble: bool = True,
        started: int | None = None,
    ) -> None:
        """`policy(topic)` gives the topic's recovery deadline in seconds (0: none).
        `reassemble=False` (relays) tracks parts without keeping their bytes. `started`:
        our start (wall clock, ns, like epochs): a stream that began after it, first
        heard near its start, is ours from its first message (a lost first message is
        recovered); any other is joined where we first hear it."""
        self.policy = policy
        self.started = started
        self.limits = limits or Limits()
        self.reassemble = reassemble
        self._streams: OrderedDict[Key, _Stream] = OrderedDict()
        self._incomplete: OrderedDict[tuple[Key, int], None] = OrderedDict()  # oldest first
        self._senders: dict[str, int] = {}  # bytes of incomplete messages per sender
        self._timers: list[tuple[float, Key, int, int]] = []  # (when, stream, epoch, seq)
        self.pending_bytes = 0
        self.lost: deque[Lost] = deque(maxlen=4096)

    # -- inputs -------------------------------------------------------------------------
    def datagram(self, now: float, d: Datagram, via: Via) -> tuple[str, Delivery | None]:
        """One authenticated DATA datagram. Verdicts: "delivered" (a whole message, the
        Delivery), "new" (a part we lacked), "duplicate", "stale_epoch", "bad_chunk",
        "too_big"."""
        lim = self.limits
        if d.parts == 0 or d.part >= d.parts or len(d.body) > d.size or d.size > lim.max_message:
            return ("too_big" if d.size > lim.max_message else "bad_chunk"), None
        if d.parts > 1 and d.size < d.parts:  # every chunk carries at least one byte
            return "bad_chunk", None
        s = self._stream(now, d, via, d.seq - 1)
        if s is None:
            return "stale_epoch", None
        seq = d.seq
        m = s.pending.get(seq)
        if m is None:
            if seq <= s.base or seq in s.done:
                return "duplicate", None
            if not s.deadline and seq <= s.highest:  # newest wins: an older message is of no use
                return "duplicate", None
            if seq - s.base > lim.window:
                self._resync(s, seq - 1)
            if d.parts == 1 and d.part == 0 and len(d.body) == d.size:  # the common case: one datagram
                self._reveal(now, s, seq)
                self._settle(s, seq)
                return "delivered", Delivery(*s.key, s.epoch, seq, d.sent_at, d.body, 1, False)
            m = self._open(now, s, seq)
        if m.parts == 0:
            m.parts, m.size = d.parts, d.size
        elif m.parts != d.parts or m.size != d.size:
            return "bad_chunk", None
        if d.part in m.got:
            return "duplicate", None
        m.got.add(d.part)
        m.last = now
        hole = d.part > m.top + 1
        if d.part > m.top:
            m.top = d.part
        if self.reassemble:
            m.bodies[d.part] = d.body
            self._grow(s, m, len(d.body))
        self._reveal(now, s, seq)
        if len(m.got) == m.parts:
            body = b"".join(m.bodies[p] for p in range(m.parts)) if self.reassemble else b""
            recovered = m.asks > 0
            self._close(s, seq)
            if self.reassemble and len(body) != m.size:
                self.lost.append(Lost(*s.key, seq, "bad_size"))
                return "bad_chunk", None
            return "delivered", Delivery(*s.key, s.epoch, seq, d.sent_at, body, m.parts, recovered)
        soon = now + lim.nack_delay  # a new hole is asked for soon, whatever the back-off
        if (
            m.tries < lim.nack_tries
            and self._recovers(s)
            and (m.next_nack == float("inf") or hole and m.next_nack > soon)
        ):
            self._schedule_nack(s, seq, m, soon)
        self._evict_memory(s.key[0])
        return "new", None

    def state(self, now: float, d: Datagram, via: Via) -> str:
        """A STATE note: the stream's sender has sent up to `d.seq`. Verdicts: "ok",
        "stale_epoch", "ignored" (a no-recovery topic)."""
        if not self.policy(d.topic):
            return "ignored"
        s = self._stream(now, d, via, d.seq)
        if s is None:
            return "stale_epoch"
        if d.seq > s.base + self.limits.window:
            self._resync(s, d.seq)
            return "ok"
        if d.seq > s.highest:
            self._reveal(now, s, d.seq)
            if d.seq not in s.pending and d.seq not in s.done and d.seq > s.base:
                self._missing(now, s, d.seq)
        return "ok"

    def on_timer(self, now: float) -> list[NackOut]:
        """Give up what is past its deadline; the NACKs due now."""
        out: dict[tuple[Via, Key], list[Want]] = {}
        timers = self._timers
        while timers and timers[0][0] <= now:
            when, key, epoch, seq = heapq.heappop(timers)
            s = self._streams.get(key)
            m = s.pending.get(seq) if s is not None and s.epoch == epoch else None
            if m is None or s is None or when != m.due:
                continue  # settled, or a superseded timer entry
            m.due = float("inf")
            if now >= m.give_up:
                self._close(s, seq)
                self.lost.append(Lost(*key, seq, "deadline" if s.deadline else "hole"))
                continue
            if m.next_nack <= now:
                m.next_nack = float("inf")
                ranges = self._wanted(now, s, seq, m)
                if ranges is None:  # only a tail that may still be on its way
                    m.next_nack = m.last + self.limits.tail_delay
                else:
                    if len(m.got) > m.progress:  # the last NACK brought parts: a fresh back-off
                        m.tries = 0
                    if m.tries < self.limits.nack_tries and s.vias:
                        out.setdefault((self._via(s, m.asks, now), key), []).append(Want(seq, ranges))
                        m.tries += 1
                        m.asks += 1
                        m.progress = len(m.got)
                        lim = self.limits
                        gap = min(lim.nack_max_interval, lim.nack_interval * lim.nack_backoff ** (m.tries - 1))
                        m.next_nack = now + gap
            self._arm(s, seq, m)
        return [
            NackOut(via, key[0], key[1], self._streams[key].epoch, wants)
            for (via, key), wants in out.items()
            if key in self._streams
        ]

    def next_deadline(self) -> float | None:
        """When `on_timer` has something to do (None: nothing pending)."""
        return self._timers[0][0] if self._timers else None

    def __len__(self) -> int:
        return len(self._streams)

    def incomplete(self) -> int:
        """Messages pending (partly here, or known to be missing)."""
        return len(self._incomplete)

    # -- streams --------------------------------------------------------------------------
    def _stream(self, now: float, d: Datagram, via: Via, start: int) -> _Stream | None:
        key = (d.sender, d.topic)
        s = self._streams.get(key)
        if s is not None and s.epoch != d.epoch:
            if d.epoch < s.epoch and now - s.heard < self.limits.silent_after:
                return None
            self._drop_stream(s, "restarted")
            s = None
        if s is None:
            if len(self._streams) >= self.limits.max_streams:
                _, old = self._streams.popitem(last=False)
                self._drop_stream(old, "evicted", remove=False)
            if self.started is not None and d.epoch >= self.started and start < self.limits.join_slack:
                start = 0  # we were listening before the stream began: all of it is ours
            s = _Stream(key, d.epoch, self.policy(d.topic), max(0, start), now)
            self._streams[key] = s
        else:
            self._streams.move_to_end(key)
            lim = self.limits
            if start - s.highest > lim.join_slack and now - s.heard > lim.rejoin_after and s.deadline:
                # far ahead after a silence: the stream went elsewhere (a path change) or we
                # were cut off for long; asking for all of it would be a storm: join anew
                self.lost.append(Lost(*key, s.highest + 1, "rejoined"))
                self._resync(s, start)
        s.heard = now
        vias = s.vias
        vias[via] = now
        if len(vias) > 4:  # remember the few most recent upstreams
            del vias[min(vias, key=vias.__getitem__)]
        return s

    def _drop_stream(self, s: _Stream, reason: str, remove: bool = True) -> None:
        for seq in list(s.pending):
            self._close(s, seq)
            self.lost.append(Lost(*s.key, seq, reason))
        if remove:
            self._streams.pop(s.key, None)

    def _resync(self, s: _Stream, base: int) -> None:
        for seq in sorted(s.pending):
            self._close(s, seq)
            self.lost.append(Lost(*s.key, seq, "resync"))
        s.base = s.highest = base
        s.done.clear()

    def _recovers(self, s: _Stream) -> bool:
        return bool(s.deadline) and self.limits.nack

    def _reveal(self, now: float, s: _Stream, seq: int) -> None:
        """Message `seq` exists: every unseen seq between the highest and it is missing."""
        if seq <= s.highest:
            return
        first = max(s.highest + 1, s.base + 1)
        s.highest = seq
        if not s.deadline:  # newest wins: skipped messages are simply gone
            for old in [x for x in s.pending if x < seq]:
                self._close(s, old)
                self.lost.append(Lost(*s.key, old, "hole"))
            s.base = seq - 1
            s.done = {x for x in s.done if x > s.base}
            return
        for missing in range(first, seq):
            if missing not in s.pending and missing not in s.done:
                self._missing(now, s, missing)
        # an earlier message stalled on its tail is now surely complete at the sender
        for other_seq, other in s.pending.items():
            if other_seq < seq and other.parts and other.next_nack > now + self.limits.nack_delay:
                if other.tries < self.limits.nack_tries and self._recovers(s):
                    self._schedule_nack(s, other_seq, other, now + self.limits.nack_delay)

    def _missing(self, now: float, s: _Stream, seq: int) -> None:
        """A message known to exist, no part of it here."""
        m = self._open(now, s, seq)
        if self._recovers(s):
            self._schedule_nack(s, seq, m, now + self.limits.nack_delay)

    def _open(self, now: float, s: _Stream, seq: int) -> _Msg:
        if len(self._incomplete) >= self.limits.max_incomplete:
            (key, old), _ = self._incomplete.popitem(last=False)
            self._close(self._streams[key], old)
            self.lost.append(Lost(*key, old, "memory"))
        m = _Msg(now, now + (s.deadline or self.limits.hole_timeout))
        s.pending[seq] = m
        self._incomplete[(s.key, seq)] = None
        self._arm(s, seq, m)
        return m

    def _schedule_nack(self, s: _Stream, seq: int, m: _Msg, when: float) -> None:
        m.next_nack = when
        self._arm(s, seq, m)

    def _arm(self, s: _Stream, seq: int, m: _Msg) -> None:
        """Keep one timer entry per message, at its earliest due time."""
        when = min(m.give_up, m.next_nack)
        if when < m.due:
            m.due = when
            heapq.heappush(self._timers, (when, s.key, s.epoch, seq))

    def _close(self, s: _Stream, seq: int) -> None:
        m = s.pending.pop(seq, None)
        if m is not None:
            self._incomplete.pop((s.key, seq), None)
            if m.nbytes:
                self._grow(s, m, -m.nbytes)
        self._settle(s, seq)

    def _settle(self, s: _Stream, seq: int) -> None:
        if seq == s.base + 1:
            s.base = seq
            done = s.done
            while s.base + 1 in done:
                s.base += 1
                done.discard(s.base)
        elif seq > s.base:
            s.done.add(seq)

    def _grow(self, s: _Stream, m: _Msg, n: int) -> None:
        m.nbytes += n
        s.nbytes += n
        self.pending_bytes += n
        sender = s.key[0]
        total = self._senders.get(sender, 0) + n
        if total:
            self._senders[sender] = total
        else:
            self._senders.pop(sender, None)

    def _evict_memory(self, sender: str) -> None:
        lim = self.limits
        while self._senders.get(sender, 0) > lim.sender_bytes:
            if not self._evict_oldest(lambda k: k[0] == sender):
                break
        while self.pending_bytes > lim.pending_bytes:
            if not self._evict_oldest(lambda k: True):
                break

    def _evict_oldest(self, match: Callable[[Key], bool]) -> bool:
        for key, seq in self._incomplete:
            if match(key):
                s = self._streams[key]
                if s.pending[seq].nbytes:
                    self._close(s, seq)
                    self.lost.append(Lost(*key, seq, "memory"))
                    return True
        return False

    # -- NACK content ---------------------------------------------------------------------
    def _wanted(self, now: float, s: _Stream, seq: int, m: _Msg) -> list[tuple[int, int]] | None:
        """Part ranges to ask for ([] = every part); None when only a tail is missing and
        it may still be in flight."""
        if not m.parts:
            return []
        stalled = m.last + self.limits.tail_delay <= now or s.highest > seq  # (the timer's own sum)
        end = m.parts if stalled else m.top
        ranges: list[tuple[int, int]] = []
        start = None
        for p in range(end):
            if p in m.got:
                if start is not None:
                    ranges.append((start, p))
                    start = None
            elif start is None:
                start = p
        if start is not None:
            ranges.append((start, end))
        if not ranges:
            return None
        return ranges

    def _via(self, s: _Stream, tries: int, now: float) -> Via:
        """The upstream to ask: in turn over those heard lately (a dead relay is passed
        over once the others have been heard since), most recent first."""
        order = sorted(s.vias, key=s.vias.__getitem__, reverse=True)
        fresh = [v for v in order if now - s.vias[v] <= self.limits.via_fresh] or order
        return fresh[tries % len(fresh)]
