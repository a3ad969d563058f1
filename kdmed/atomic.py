"""Atomic file output: write to a temporary file in the destination folder, then rename over the target.

A crash or Ctrl-C mid-write leaves the previous file (or nothing), never a truncated one. The temporary
file is flushed to disk (fsync) before the rename and the folder after it, so a power cut cannot leave a
renamed but empty file either.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give outputs the usual permissions
        _fsync(tmp_path, os.O_RDONLY)
        os.replace(tmp_path, path)
        _fsync(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _fsync(path: Path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def csv_text(
    rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None, line_end: str = "\r\n"
) -> str:
    """Rows of dicts as CSV text (the project's one CSV writer; `write_csv` puts it in a file): header
    `columns`, or the first row's keys. A row with a key outside the header is an error (csv.DictWriter);
    the line end is csv's default (RFC 4180) unless given."""
    rows = list(rows)
    if columns is None:
        if not rows:
            raise ValueError("no rows to write and no columns given; pass columns= for an empty table.")
        columns = list(rows[0])
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(columns), lineterminator=line_end)
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def write_csv(
    path: str | Path, rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None
) -> None:
    """`csv_text(rows, columns)` written atomically to `path`."""
    write_text(path, csv_text(rows, columns))
