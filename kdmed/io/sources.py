"""Turn whatever the caller hands us into a flat list of sniffed files, all in memory or on disk.

Accepted sources: a path to a file or a folder (walked recursively, hidden entries skipped), a list of paths,
`bytes`, a list of `(name, bytes)` pairs, or upload objects with `.name` and `.getvalue()` (Streamlit's
`UploadedFile`). Zip archives are opened in memory, never extracted to disk: member paths are only labels,
unsafe ones (absolute, `..`) are refused, every member is inflated with a hard cap, and the bytes inflated
per call are capped too. Gzip files are inflated (capped) and sniffed again. Upload names are reduced to
their basename so messages never echo a client's folder layout.
"""

from __future__ import annotations

import gzip
import io
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from kdmed.errors import StudyReadError
from kdmed.io.limits import ReadLimits, bounded_read, check_file_count, check_file_size, human_bytes
from kdmed.io.sniff import HEAD_BYTES, SUPPORTED, Kind, sniff


@dataclass(eq=False)
class Item:
    """One file: on disk (`path`) or in memory (`data`). `name` is what messages show."""

    name: str
    path: Path | None = None
    data: bytes | None = None
    kind: Kind = Kind.UNKNOWN
    problem: str | None = None  # why this file cannot be used, when known at sniffing time

    def size(self) -> int:
        return len(self.data) if self.data is not None else self.path.stat().st_size  # type: ignore[union-attr]

    def head(self, n: int = HEAD_BYTES) -> bytes:
        if self.data is not None:
            return self.data[:n]
        with open(self.path, "rb") as fh:  # type: ignore[arg-type]
            return fh.read(n)

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        return self.path.read_bytes()  # type: ignore[union-attr]

    def stream(self) -> Any:
        """A path string or a seekable binary stream, as pydicom and nibabel accept."""
        return str(self.path) if self.data is None else io.BytesIO(self.data)


@dataclass
class _Budget:
    limits: ReadLimits
    inflated: int = 0
    notes: list[str] = field(default_factory=list)

    def spend(self, n: int, name: str) -> None:
        self.inflated += n
        if self.inflated > self.limits.max_total_bytes:
            raise StudyReadError(
                f"{name}: archives in this source inflate to more than "
                f"{human_bytes(self.limits.max_total_bytes)} (ReadLimits.max_total_bytes); it may be a zip "
                "bomb, or pass a larger limit if it is trusted"
            )


def collect(source: Any, limits: ReadLimits) -> list[Item]:
    """Every file of `source`, sniffed, with zips expanded and gzip inflated."""
    budget = _Budget(limits)
    raw = _raw_items(source, limits)
    out: list[Item] = []
    for item in raw:
        item.kind = _sniff_item(item, limits)
        if item.kind is Kind.ZIP:
            out.extend(_zip_members(item, budget))
        elif item.kind is Kind.GZIP:
            out.append(_gunzip(item, budget))
        else:
            out.append(item)
        check_file_count("this source", len(out), limits)
    return out


def _sniff_item(item: Item, limits: ReadLimits) -> Kind:
    try:
        size = item.size()
        check_file_size(item.name, size, limits)
        return sniff(item.head())
    except OSError as exc:
        raise StudyReadError(
            f"{item.name}: cannot be read ({exc.strerror or exc}); check the path and permissions"
        ) from exc


def _raw_items(source: Any, limits: ReadLimits) -> list[Item]:
    if isinstance(source, bytes | bytearray | memoryview):
        return [Item("upload", data=bytes(source))]
    if isinstance(source, str | os.PathLike):
        return _path_items(Path(source), limits)
    if _is_upload(source):
        return [_upload_item(source)]
    if isinstance(source, list | tuple):
        if not source:
            raise StudyReadError("the source is an empty list: pass at least one file, folder or upload")
        items: list[Item] = []
        for element in source:
            if isinstance(element, tuple) and len(element) == 2 and isinstance(element[0], str):
                name, data = element
                if not isinstance(data, bytes | bytearray | memoryview):
                    raise StudyReadError(
                        f"{_basename(name)}: upload content must be bytes, got {type(data).__name__}"
                    )
                items.append(Item(_basename(name), data=bytes(data)))
            elif isinstance(element, str | os.PathLike):
                items.extend(_path_items(Path(element), limits))
            elif _is_upload(element):
                items.append(_upload_item(element))
            else:
                raise StudyReadError(
                    f"unsupported list element of type {type(element).__name__}: pass paths or (name, bytes) "
                    "pairs"
                )
            check_file_count("this source", len(items), limits)
        return items
    raise StudyReadError(
        f"unsupported source of type {type(source).__name__}: pass a path, a folder, a list of paths, bytes, "
        "or a list of (name, bytes) pairs"
    )


def _is_upload(obj: Any) -> bool:
    return hasattr(obj, "getvalue") and hasattr(obj, "name")


def _upload_item(obj: Any) -> Item:
    return Item(_basename(str(obj.name)), data=bytes(obj.getvalue()))


def _basename(name: str) -> str:
    return PurePosixPath(name.replace("\\", "/")).name or "upload"


def _path_items(path: Path, limits: ReadLimits) -> list[Item]:
    if path.is_file():
        return [Item(str(path), path=path)]
    if not path.is_dir():
        raise StudyReadError(f"{path}: no such file or folder; check the path")
    items: list[Item] = []
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for fname in sorted(files):
            if fname.startswith("."):
                continue
            items.append(Item(str(Path(root) / fname), path=Path(root) / fname))
            check_file_count(f"folder {path}", len(items), limits)
    if not items:
        raise StudyReadError(f"{path}: the folder holds no files; pass a folder with DICOM files or an image")
    return items


def _zip_members(item: Item, budget: _Budget) -> list[Item]:
    limits = budget.limits
    try:
        with zipfile.ZipFile(item.stream() if item.data is not None else item.path) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            infos = [i for i in infos if not i.filename.startswith("__MACOSX/")]
            check_file_count(f"archive {item.name}", len(infos), limits)
            members: list[Item] = []
            for info in infos:
                label = f"{item.name}:{info.filename}"
                _check_member_name(label, info.filename)
                if info.flag_bits & 0x1:
                    raise StudyReadError(
                        f"{label}: the member is encrypted; upload an archive without a password"
                    )
                check_file_size(label, info.file_size, limits)
                with zf.open(info) as fh:
                    data = bounded_read(fh, limits.max_file_bytes, label)
                budget.spend(len(data), label)
                member = Item(label, data=data, kind=sniff(data[:HEAD_BYTES]))
                if member.kind is Kind.ZIP:
                    raise StudyReadError(
                        f"{label}: archives inside archives are not read; unpack the inner zip"
                    )
                if member.kind is Kind.GZIP:
                    member = _gunzip(member, budget)
                members.append(member)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError) as exc:
        raise StudyReadError(
            f"{item.name}: the zip archive is corrupt or unsupported ({exc}); re-create it"
        ) from exc
    if not members:
        raise StudyReadError(f"{item.name}: the zip archive is empty; it must hold DICOM files or one image")
    return members


def _check_member_name(label: str, name: str) -> None:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
        raise StudyReadError(
            f"{label}: unsafe member path (absolute or with '..'); the archive was refused, re-create it "
            "with relative paths"
        )


def _gunzip(item: Item, budget: _Budget) -> Item:
    limits = budget.limits
    try:
        if item.data is not None:
            with gzip.GzipFile(fileobj=io.BytesIO(item.data)) as fh:
                data = bounded_read(fh, limits.max_file_bytes, item.name)
        else:
            with gzip.open(item.path, "rb") as fh:  # type: ignore[arg-type]
                data = bounded_read(fh, limits.max_file_bytes, item.name)
    except (OSError, EOFError, zlib.error) as exc:
        problem = f"the gzip stream is corrupt or truncated ({exc}); re-export or re-upload the file"
        return Item(item.name, data=b"", kind=Kind.UNKNOWN, problem=problem)
    budget.spend(len(data), item.name)
    kind = sniff(data[:HEAD_BYTES])
    problem = None
    if kind in (Kind.GZIP, Kind.ZIP):
        kind, problem = Kind.UNKNOWN, f"gzip holding a {kind.value} archive is not read; unpack it first"
    elif kind is Kind.EMPTY:
        kind, problem = Kind.UNKNOWN, "the gzip file decompresses to nothing; re-export it"
    elif kind is Kind.UNKNOWN:
        problem = f"the gzip file does not hold a supported format ({SUPPORTED})"
    return Item(item.name, data=data, kind=kind, problem=problem)
