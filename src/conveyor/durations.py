"""How long something took, written the same way by every front end (`1h 02m 03s`).

The CLI and the console show the same job; one function, rounding to the nearest second, keeps
them from disagreeing (`0s` in one, `1s` in the other).
"""

from __future__ import annotations


def format_duration(seconds: float) -> str:
    """`45s`, `2m 05s`, `1h 02m 03s`; a negative span (clock skew) is `0s`."""
    whole = int(round(max(seconds, 0.0)))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"
