"""Turn third-party reader exceptions into `StudyReadError` at the boundary, naming the file."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from kdmed.errors import KdmedError, StudyReadError


@contextmanager
def reading(name: str, what: str, hint: str) -> Iterator[None]:
    """Any failure of pydicom / nibabel / Pillow inside becomes `StudyReadError("<name>: <what>; <hint>")`.

    Those libraries signal a corrupt file with many exception types (ValueError, EOFError, struct.error,
    KeyError, their own classes), so the net is wide on purpose; kdmed's own errors pass through unchanged.
    """
    try:
        yield
    except KdmedError:
        raise
    except MemoryError as exc:
        raise StudyReadError(
            f"{name}: not enough memory to read it; pass tighter ReadLimits or a smaller study"
        ) from exc
    except Exception as exc:
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise StudyReadError(f"{name}: {what} ({type(exc).__name__}: {detail}); {hint}") from exc
