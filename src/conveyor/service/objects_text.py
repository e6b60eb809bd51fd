"""How far a job got in objects, written the same way by every front end (`3/10 objects (1 failed)`).

A failed object is finished too: counting only the objects done showed a job whose every object
failed as `0/3` in the console while `conveyor jobs describe` said `3/3 objects (3 failed)`.
"""

from __future__ import annotations

from typing import Any


def objects_finished(progress: dict[str, Any]) -> int:
    """Objects done or failed, from the progress view (`ObjectsDone`, `ObjectsFailed`)."""
    return (progress.get("ObjectsDone") or 0) + (progress.get("ObjectsFailed") or 0)


def objects_text(progress: dict[str, Any]) -> str:
    """`3/10 objects`, or `3/10 objects (1 failed)` when some failed; `(listing)` while the
    total counts only the objects listed so far (`Listing`)."""
    failed = progress.get("ObjectsFailed") or 0
    notes = [f"{failed} failed"] if failed else []
    if progress.get("Listing"):
        notes.append("listing")
    text = f"{objects_finished(progress)}/{progress.get('ObjectsTotal') or 0} objects"
    return text + (f" ({', '.join(notes)})" if notes else "")
