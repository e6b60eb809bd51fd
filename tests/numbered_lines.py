"""Generated line-delimited data: numbered CSV lines, so a misplaced or repeated chunk changes a digest."""

from __future__ import annotations

from typing import Iterator

MiB = 1 << 20
LINE = b"%012d,0.1234,5.6789,abcdefghij,0.0001,9.8765,klmnopqrst,42\n"


def numbered_lines(total: int, block_size: int = MiB) -> Iterator[bytes]:
    """`total` bytes of numbered CSV lines (ending with a newline), `block_size` at a time."""
    number = 0
    produced = 0
    pending = b""
    while produced < total:
        lines = [pending]
        size = len(pending)
        while size < block_size:
            line = LINE % number
            lines.append(line)
            size += len(line)
            number += 1
        joined = b"".join(lines)
        block, pending = joined[: min(block_size, total - produced)], joined[min(block_size, total - produced) :]
        if produced + len(block) == total and not block.endswith(b"\n"):
            block = block[:-1] + b"\n"
        produced += len(block)
        yield block
