"""Which studies an archive holds: a folder tree walked by file content, or a manifest listing them.

A study is what `kdmed score` takes as one source:
- a folder holding DICOM files directly (its subfolders are not walked: `kdmed score` reads them with it);
- a NIfTI file (.nii, .nii.gz, or the .hdr of a pair);
- a zip (of DICOM files);
- a 2D image (PNG, JPEG, BMP, TIFF).
Files are told apart by their first bytes (`kdmed.io.sniff`), never by name, except that a gzip must be
named .nii.gz to count (other gzips are skipped). Anything else is skipped and counted.

A manifest is a text or CSV file with one study path per line (relative paths are taken from the
manifest's folder); a CSV's header row, when it has one, names the `path` column.
"""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from kdmed.errors import KdmedError
from kdmed.io import DICOM_KINDS, HEAD_BYTES, IMAGE_KINDS, NIFTI_KINDS, Kind, sniff

__all__ = ["StudyRef", "find_studies", "study_id"]

MANIFEST_SUFFIXES = (".csv", ".txt", ".lst")


@dataclass(frozen=True)
class StudyRef:
    """One study of the archive: its pseudonymous id (`study_id`) and where it is."""

    study: str
    path: Path


def study_id(relative: str) -> str:
    """A stable pseudonym for a study's path inside the archive (16 hex digits of its SHA-256): the results
    table carries this instead of the path, which may hold names or record numbers."""
    return hashlib.sha256(relative.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def find_studies(source: str | Path) -> tuple[list[StudyRef], int]:
    """The studies of a folder tree or manifest, in a stable order, and how many files were skipped."""
    source = Path(source)
    if source.is_file() and source.suffix.lower() in MANIFEST_SUFFIXES:
        return _from_manifest(source), 0
    if not source.is_dir():
        raise KdmedError(
            f"archive {source} is neither a folder nor a manifest ({', '.join(MANIFEST_SUFFIXES)}); "
            "pass a folder of studies, or a text/CSV file listing one study path per line"
        )
    found, skipped = _walk(source)
    return [StudyRef(study_id(_relative(p, source)), p) for p in found], skipped


def _kind(path: Path) -> Kind:
    try:
        with path.open("rb") as handle:
            return sniff(handle.read(HEAD_BYTES))
    except OSError:
        return Kind.UNKNOWN


def _walk(root: Path) -> tuple[list[Path], int]:
    studies: list[Path] = []
    skipped = 0
    for folder, subfolders, files in os.walk(root):
        subfolders.sort()
        here = Path(folder)
        kinds = {name: _kind(here / name) for name in sorted(files)}
        if any(kind in DICOM_KINDS for kind in kinds.values()):
            studies.append(here)
            subfolders.clear()  # read with this folder by `kdmed score`
            continue
        for name, kind in kinds.items():
            is_nifti_gz = kind == Kind.GZIP and name.lower().endswith(".nii.gz")
            if kind in NIFTI_KINDS or kind in IMAGE_KINDS or kind == Kind.ZIP or is_nifti_gz:
                studies.append(here / name)
            else:
                skipped += 1
    return studies, skipped


def _from_manifest(manifest: Path) -> list[StudyRef]:
    rows = [row for row in csv.reader(manifest.read_text(encoding="utf-8").splitlines()) if row]
    header = [cell.strip().lower() for cell in rows[0]] if rows else []
    has_header = "path" in header
    column = header.index("path") if has_header else 0
    refs, seen = [], set()
    for number, row in enumerate(rows[1:] if has_header else rows, start=2 if has_header else 1):
        if column >= len(row) or not row[column].strip() or row[column].lstrip().startswith("#"):
            continue
        listed = row[column].strip()
        path = Path(listed) if Path(listed).is_absolute() else manifest.parent / listed
        if not path.exists():
            raise KdmedError(
                f"manifest {manifest}, line {number}: {listed} does not exist; fix the path (relative paths "
                "are read from the manifest's folder) or remove the line"
            )
        if listed not in seen:
            seen.add(listed)
            refs.append(StudyRef(study_id(listed), path))
    return refs


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()
