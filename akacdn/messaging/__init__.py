"""Messaging: the real-time UDP network of relays, and the reliable HTTP transport.

The paper (§3.2): "a real-time (UDP) network and a reliable (HTTP/TCP) transport network.
Our real-time transport network ... uses multi-path routing, and at times limited
retransmission, to achieve a high level of reliability without sacrificing latency."
Every heartbeat, report, map, purge and region report goes through this package.

Streams. A sender's messages on a topic form a stream (sender, topic, epoch), the epoch
being the sender's start in ns (a restarted sender is a new stream), numbered from 1
(`sender.Outbox`). A message of any size (up to `max_message_bytes`) is cut into chunks
of at most `chunk_bytes` (1,200: no IP fragmentation), every chunk a datagram of its own
(`envelope`: wire format, HMAC with a key id, rotation with two accepted keys).

Paths. Each datagram goes through `paths` relays (2 by default) in distinct regions,
chosen per publisher by rendezvous hashing among the relays that answer its
subscription renewals (`paths`); a relay forwards it to every subscriber of its topic
(`relay`, `subscriptions`), so a subscriber gets each datagram about `paths` times and
keeps the first (`receiver`).

Recovery, hop by hop (after Spines). Every sender and relay keeps its recent datagrams
(`history.History`, bounded in bytes and age). A receiver (subscriber, or a relay for
the link from the publisher) that sees a gap in a stream's sequence, a hole in a
message's chunks, or a lost tail (revealed by the sender's STATE notes) NACKs an
upstream it heard the stream from, after a short delay (the other path's copy usually
fills the gap first), re-NACKs with back-off and gives up at the topic's deadline
(`[messaging] deadlines`: maps 10 s, purges 30 s, heartbeats none: the newest wins).
Repairs are limited to a share of the traffic sent to that destination
(`history.Budget`: 20 %). With no loss, recovery costs nothing: no NACK is ever sent.

What is refused, and counted: forged (bad tag), unknown key, malformed, too old (sent
more than `max_age` ago: with per-stream de-duplication this stops replays), an epoch
after its send time, duplicates, datagrams from anywhere but the sending machine's
configured addresses (at a relay) or a relay (at a subscriber), inconsistent chunks,
oversize messages, and incomplete messages past their deadline or their byte bounds.

Reliable transport (`transport`): the mapping centers serve their newest signed maps and
their purge journal (`journal`) over HTTP; relays serve the same routes as a cache of
the centers. Consumers fetch from it at start, when a center's announcement names a
map or a journal head they lack, and when the receiver gives up on a message.
"""
