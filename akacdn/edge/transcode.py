"""Pump one body through a codec into a new BodyStream (the asyncio shell of `encoding`).

Theory of operation. The source is an origin body still arriving (`BodyStream.chunks()`)
or a stored one (bytes, `FileBody.pieces()`, read with pread: quick enough to run on the
loop). Each chunk goes through the codec and what comes out is fed to `into`, whose
readers (clients, the store) see it as it is produced. Every few chunks the pump yields
to the loop, so re-encoding a large body that is all there never starves other requests.
A corrupt or oversized body, a broken source, or a spool that cannot be written ends
`into` as failed (its readers drop their connections: never a short body passed off as
whole); cancellation (shutdown) fails it too, and propagates.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Iterable
from pathlib import Path

from .encoding import Codec, CodingError
from .message import BodyStream, BodyStreamError

YIELD_EVERY = 4  # chunks between two turns given back to the loop


async def _chunks(source: AsyncIterable[bytes] | Iterable[bytes]) -> AsyncIterable[bytes]:
    if isinstance(source, AsyncIterable):
        async for chunk in source:
            yield chunk
    else:
        for chunk in source:
            yield chunk


async def pump(source: AsyncIterable[bytes] | Iterable[bytes], codec: Codec, into: BodyStream) -> None:
    """Feed every chunk of `source` through `codec` into `into`, then finish both. A
    coding error, a broken source or an I/O error fails `into` (and returns normally);
    cancellation, or any other exception, fails it and is re-raised."""
    try:
        n = 0
        async for chunk in _chunks(source):
            out = codec.feed(chunk)
            if out:
                into.feed(out)
            n += 1
            if n % YIELD_EVERY == 0:
                await asyncio.sleep(0)
        out = codec.finish()
        if out:
            into.feed(out)
    except asyncio.CancelledError:
        into.fail("edge shutting down")
        raise
    except CodingError as e:
        into.fail(f"body coding: {e}")
        return
    except BodyStreamError as e:
        into.fail(str(e) or "source body broke")
        return
    except OSError as e:
        into.fail(f"I/O error: {e}")
        return
    except Exception as e:  # a bug: its readers must not wait forever, and it must be seen
        into.fail(f"transcoding failed: {e!r}")
        raise
    into.finish()


def transcoded(spool_dir: Path | None = None) -> BodyStream:
    """A stream for a re-encoded body: its length is not known until it ends."""
    return BodyStream(None, spool_dir)
