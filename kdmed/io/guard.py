"""Turn third-party reader exceptions into `StudyReadError` at the boundary, naming the file."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from kdmed.errors import KdmedError, StudyReadError

# never swallowed: the user or the interpreter asked to stop
PASS_THROUGH = (KeyboardInterrupt, SystemExit, GeneratorExit)


class UnexpectedReaderError(StudyReadError):
    """A reader failed in a way no specific check foresaw (caught by `boundary`, not by `reading`).

    The user still gets a clear message and nothing crashes; the fuzzer counts these as raw errors, because
    each one marks a place that deserves its own check and message."""


def _detail(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else ""


@contextmanager
def _net(name: str, wrap) -> Iterator[None]:
    """kdmed's own errors and PASS_THROUGH go through; MemoryError gets the memory message; any other
    exception (BaseException included: native panics) becomes `wrap(exc)`."""
    try:
        yield
    except (KdmedError, *PASS_THROUGH):
        raise
    except MemoryError as exc:
        raise StudyReadError(
            f"{name}: not enough memory to read it; pass tighter ReadLimits or a smaller study"
        ) from exc
    except BaseException as exc:  # noqa: BLE001 - panics from native decoders are BaseExceptions
        raise wrap(exc) from exc


def reading(name: str, what: str, hint: str):
    """Any failure of pydicom / nibabel / Pillow inside becomes `StudyReadError("<name>: <what>; <hint>")`.

    Those libraries signal a corrupt file with many exception types (ValueError, EOFError, struct.error,
    KeyError, their own classes), and native plug-ins with BaseException subclasses (pyo3's PanicException),
    so the net is wide on purpose; kdmed's own errors pass through unchanged.
    """
    return _net(
        name, lambda exc: StudyReadError(f"{name}: {what} ({type(exc).__name__}: {_detail(exc)}); {hint}")
    )


def boundary(label: str):
    """The last net around `load_study` and friends: whatever escaped the readers' own checks becomes an
    `UnexpectedReaderError` naming the source, so no caller (app, CLI, batch scorer) ever sees a raw one."""
    return _net(
        label,
        lambda exc: UnexpectedReaderError(
            f"{label}: the file could not be read ({type(exc).__name__}: {_detail(exc)}); it is damaged or "
            "unusual: export it again, and if it opens elsewhere please report it with the file"
        ),
    )
