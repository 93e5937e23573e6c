"""Per-topic messaging metrics (Prometheus), with the labelled children cached: a
subscriber such as a mapping center counts thousands of datagrams a second."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter

from ..runtime import Runtime
from .receiver import Delivery


class _Family:
    def __init__(self, counter: Counter) -> None:
        self.counter = counter
        self._children: dict[tuple[str, ...], Any] = {}

    def inc(self, labels: tuple[str, ...], n: float = 1) -> None:
        child = self._children.get(labels)
        if child is None:
            if len(self._children) > 4096:  # labels come from authenticated input, still bounded
                labels = tuple("other" for _ in labels)
                child = self._children.get(labels)
            if child is None:
                child = self._children[labels] = self.counter.labels(*labels)
        child.inc(n)


class TopicStats:
    """A client's counters: messages sent/delivered/recovered/reassembled/lost per topic,
    datagrams dropped per topic and reason, datagrams sent per kind, NACKs, repairs."""

    def __init__(self, rt: Runtime) -> None:
        c = rt.counter
        self._sent = _Family(c("akacdn_messages_sent", "Messages published", ("topic",)))
        self._delivered = _Family(c("akacdn_messages_delivered", "Messages received whole", ("topic",)))
        self._recovered = _Family(c("akacdn_messages_recovered", "Messages completed after a NACK", ("topic",)))
        self._reassembled = _Family(c("akacdn_messages_reassembled", "Messages of several chunks", ("topic",)))
        self._lost = _Family(c("akacdn_messages_lost", "Messages given up", ("topic", "reason")))
        self._dropped = _Family(
            c(
                "akacdn_messages_dropped",
                "Datagrams refused: forged, replayed, duplicate, too old...",
                ("topic", "reason"),
            )
        )
        self._out = _Family(c("akacdn_messaging_datagrams_sent", "Datagrams sent", ("kind",)))
        self._nacks = _Family(c("akacdn_messaging_nack_wants", "Missing messages asked for", ("topic",)))
        self._repairs = _Family(c("akacdn_messaging_repairs", "Datagrams resent on a NACK", ("topic", "result")))

    def sent(self, topic: str) -> None:
        self._sent.inc((topic,))

    def delivered(self, msg: Delivery) -> None:
        self._delivered.inc((msg.topic,))
        if msg.recovered:
            self._recovered.inc((msg.topic,))
        if msg.parts > 1:
            self._reassembled.inc((msg.topic,))

    def lost(self, topic: str, reason: str) -> None:
        self._lost.inc((topic, reason))

    def dropped(self, topic: str, reason: str) -> None:
        self._dropped.inc((topic, reason))

    def datagrams_out(self, kind: str, n: int) -> None:
        self._out.inc((kind,), n)

    def nacked(self, topic: str, wants: int) -> None:
        self._nacks.inc((topic,), wants)

    def repairs(self, topic: str, result: str) -> None:
        self._repairs.inc((topic, result))
