"""Finding the records that make a payload fail, so that the others still get their outputs.

When a job tolerates failed records (docs/semantics.md, "Tolerating bad records"), a payload
that fails for good is cut in halves, each sent once with no back-off; a half that fails is cut
again, down to single records. One bad record in a payload of n records costs about 2·log2(n)
extra invocations. The answered halves and the failed records come back in record order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from conveyor.pipeline.invoke import InvocationFailed

ERROR_LIMIT = 1000
"""Characters of the model's error kept per failed record."""


@dataclass(frozen=True)
class FailedRecord:
    """A record whose invocation failed for good, as the bad-records manifest lists it."""

    record: int  # its number in the whole object, from 1
    offset: int  # its byte offset in the (decompressed) object
    error: str
    attempts: int  # invocations that carried it


@dataclass(frozen=True)
class Piece:
    """`count` consecutive records of a payload from `start`: answered by `response`, or, when
    `response` is None, one record that failed with `error` after `attempts` invocations."""

    start: int
    count: int
    response: bytes | None
    error: str = ""
    attempts: int = 0


class TooManyFailures(Exception):
    """More records failed than the job allows: bisecting further would be wasted. `pieces` are
    those found so far, the failed records among them."""

    def __init__(self, error: str, pieces: list[Piece]) -> None:
        super().__init__(error)
        self.pieces = pieces


def bisect(
    bodies: Sequence[bytes],
    send: Callable[[bytes], bytes],
    *,
    error: str,
    attempts: int,
    may_fail: Callable[[int], bool],
) -> list[Piece]:
    """Split a failed payload, whose records' bodies (as a MultiRecord payload carries them) are
    `bodies`, into answered pieces and failed records. `error` and `attempts` are the failed
    payload's; `send` tries a body once and raises InvocationFailed; `may_fail(n)` says whether
    n more failed records are still within the job's limit."""
    pieces: list[Piece] = []
    _split(bodies, 0, send, error, attempts, may_fail, pieces)
    return pieces


def _split(
    bodies: Sequence[bytes],
    start: int,
    send: Callable[[bytes], bytes],
    error: str,
    attempts: int,
    may_fail: Callable[[int], bool],
    pieces: list[Piece],
) -> None:
    if len(bodies) == 1:
        pieces.append(Piece(start, 1, None, error[:ERROR_LIMIT], attempts))
        if not may_fail(sum(1 for piece in pieces if piece.response is None)):
            raise TooManyFailures(error, pieces)
        return
    middle = len(bodies) // 2
    for offset, half in ((0, bodies[:middle]), (middle, bodies[middle:])):
        try:
            response = send(b"".join(half))
        except InvocationFailed as exc:
            _split(half, start + offset, send, exc.message, attempts + 1, may_fail, pieces)
        else:
            pieces.append(Piece(start + offset, len(half), response))
