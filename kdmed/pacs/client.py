"""Talking to a PACS over DICOMweb (QIDO-RS, WADO-RS, STOW-RS) with `dicomweb-client`, with time limits.

Every failure a PACS can cause becomes one `PacsError` naming the server, what was asked and the fix: a
server that is down or too slow, a study or series that is not there (404), a series too large for the
limits, a study with no image series. Identifying fields are read only when asked (`with_phi`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kdmed.errors import KdmedError

__all__ = ["NON_IMAGE_MODALITIES", "Pacs", "PacsError", "SeriesEntry", "StudyEntry"]

# What kdmed writes back and other non-image objects: never retrieved for scoring.
NON_IMAGE_MODALITIES = frozenset({"SEG", "SR", "KO", "PR", "DOC", "REG", "RTSTRUCT", "RTPLAN", "RTDOSE"})
MAX_INSTANCES = 4000  # a series with more instances than this is refused before anything is retrieved


class PacsError(KdmedError):
    """The PACS could not be reached, or did not give what was asked for."""


def _value(dataset: dict[str, Any], tag: str, default: Any = None) -> Any:
    values = dataset.get(tag, {}).get("Value")
    if not values:
        return default
    value = values[0]
    return value.get("Alphabetic", default) if isinstance(value, dict) else value


@dataclass(frozen=True)
class StudyEntry:
    uid: str
    date: str | None
    description: str | None
    modalities: tuple[str, ...]
    patient: dict[str, str] | None = None  # only when asked for

    def to_dict(self) -> dict[str, Any]:
        entry = {"study_uid": self.uid, "date": self.date, "description": self.description,
                 "modalities": list(self.modalities)}  # fmt: skip
        return entry | ({"patient": self.patient} if self.patient is not None else {})


@dataclass(frozen=True)
class SeriesEntry:
    uid: str
    modality: str | None
    description: str | None
    instances: int | None


class Pacs:
    """One DICOMweb server (`url` is its root, e.g. http://127.0.0.1:8042/dicom-web)."""

    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        import requests
        from dicomweb_client.api import DICOMwebClient

        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._client = DICOMwebClient(url=self.url, session=requests.Session(), timeout=timeout_s)
        # one quick retry (dicomweb-client's default, 5 attempts with exponential waits, turned a 1 s time
        # limit into 130 s and a closed port into 30 s)
        self._client.set_http_retry_params(retry=True, max_attempts=2, wait_exponential_multiplier=200)

    def _call(self, what: str, fn, *args, **kwargs):
        import requests

        try:
            return fn(*args, **kwargs)
        except requests.exceptions.Timeout:
            raise PacsError(
                f"the PACS at {self.url} did not answer {what} within {self.timeout_s:g} s; try again later "
                "or raise --timeout"
            ) from None
        except requests.exceptions.ConnectionError:
            raise PacsError(f"cannot reach a PACS at {self.url} ({what}); is it running, and is the URL its "
                            "DICOMweb root (e.g. http://127.0.0.1:8042/dicom-web)?") from None  # fmt: skip
        except requests.exceptions.HTTPError as error:
            status = error.response.status_code if error.response is not None else "?"
            if status == 404:
                raise PacsError(f"{what}: not found on {self.url} (HTTP 404); check the UID") from None
            raise PacsError(f"{what}: the PACS at {self.url} answered HTTP {status}") from None

    def studies(self, with_phi: bool = False) -> list[StudyEntry]:
        fields = ["StudyDate", "StudyDescription", "ModalitiesInStudy"]
        if with_phi:
            fields += ["PatientName", "PatientID"]
        found = self._call("listing studies", self._client.search_for_studies, fields=fields)
        entries = []
        for ds in found or []:
            patient = None
            if with_phi:
                patient = {"name": str(_value(ds, "00100010", "")), "id": str(_value(ds, "00100020", ""))}
            modalities = tuple(ds.get("00080061", {}).get("Value", []))
            entries.append(StudyEntry(_value(ds, "0020000D"), _value(ds, "00080020"), _value(ds, "00081030"),
                                      modalities, patient))  # fmt: skip
        return sorted(entries, key=lambda e: (e.date or "", e.uid))

    def series(self, study_uid: str) -> list[SeriesEntry]:
        found = self._call(
            f"study {study_uid}",
            self._client.search_for_series,
            study_uid,
            fields=["Modality", "SeriesDescription", "NumberOfSeriesRelatedInstances"],
        )
        if not found:
            raise PacsError(
                f"study {study_uid}: not found on {self.url}, or it holds no series; check the UID"
            )
        return [
            SeriesEntry(
                _value(ds, "0020000E"),
                _value(ds, "00080060"),
                _value(ds, "0008103E"),
                _int(_value(ds, "00201209")),
            )  # fmt: skip
            for ds in found
        ]

    def image_series(self, study_uid: str, series_uid: str | None = None) -> list[SeriesEntry]:
        """The series to retrieve for scoring: `series_uid` alone, or every image series of the study."""
        entries = self.series(study_uid)
        if series_uid is not None:
            entries = [e for e in entries if e.uid == series_uid]
            if not entries:
                raise PacsError(f"series {series_uid} is not in study {study_uid} on {self.url}")
        images = [e for e in entries if (e.modality or "").upper() not in NON_IMAGE_MODALITIES]
        if not images:
            kinds = ", ".join(sorted({e.modality or "?" for e in entries}))
            raise PacsError(
                f"study {study_uid} has no image series to score (only {kinds}); pick another study"
            )
        for entry in images:
            if entry.instances is not None and entry.instances > MAX_INSTANCES:
                raise PacsError(
                    f"series {entry.uid} has {entry.instances} instances, more than the {MAX_INSTANCES} kdmed "
                    "retrieves; pass --series with a smaller series"
                )
        return images

    def retrieve(self, study_uid: str, series_uid: str) -> list:
        """The instances of one series as pydicom data sets."""
        return self._call(
            f"retrieving series {series_uid}", self._client.retrieve_series, study_uid, series_uid
        )

    def store(self, datasets: list) -> None:
        """STOW-RS `datasets` in one request; any instance the PACS refuses is an error."""
        for dataset in datasets:  # dicomweb-client writes "like the original": make each a Part 10 file
            if getattr(dataset, "preamble", None) is None:
                dataset.preamble = b"\x00" * 128
        answer = self._call("storing the results", self._client.store_instances, datasets)
        failed = getattr(answer, "FailedSOPSequence", None) if answer is not None else None
        if failed:
            reasons = sorted({str(getattr(item, "FailureReason", "?")) for item in failed})
            raise PacsError(
                f"the PACS at {self.url} refused {len(failed)} of the results (reasons {reasons})"
            )


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
