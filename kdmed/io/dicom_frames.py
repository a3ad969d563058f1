"""DICOM headers -> `DicomFile` records holding one `Frame` per 2D image, whatever the file layout.

Classic files give one frame each, enhanced multi-frame files one per frame (functional groups, see
`dicom_multiframe`), Siemens mosaics one per tile (see `mosaic`). Everything downstream (grouping, sorting,
4D detection, affine) works on frames only, so the three layouts share one volume builder. The records
themselves live in `dicom_records`, below all three layouts, so no layout module imports this one.
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.uid import UID

from kdmed.errors import StudyReadError, UnsupportedStudyError
from kdmed.io import dicom_multiframe, mosaic
from kdmed.io.dicom_pixels import check_deflated_size, read_dataset, stored_range, transfer_syntax
from kdmed.io.dicom_records import DicomFile, as_int, as_text, classic_frame, phi_fields
from kdmed.io.guard import reading
from kdmed.io.header_checks import dicom_pixel_module, dicom_plane
from kdmed.io.limits import ReadLimits
from kdmed.io.sources import Item

_DIRECTORY_SOP = "1.2.840.10008.1.3.10"
_SEGMENTATION_SOP = "1.2.840.10008.5.1.4.1.1.66.4"


class NotAnImage(Exception):
    """A valid DICOM object that holds no image to load (DICOMDIR, report, RT plan...): skipped in folders."""


def read_header(item: Item, limits: ReadLimits) -> DicomFile:
    """Parse one file's header; raises `NotAnImage` for non-image objects, `StudyReadError` for bad files.

    Declared sizes and geometry are checked (`header_checks`) before any Frame is built, so a header that
    declares 2**31 frames or 1e308 cosines is refused before it costs memory or time."""
    check_deflated_size(item, limits)
    ds = read_dataset(item, pixels=False)
    _refuse_non_images(item.name, ds)
    with reading(item.name, "the DICOM header holds invalid values", "fix or re-export the file"):
        dicom_pixel_module(item.name, ds, limits)
        dicom_plane(item.name, ds)
    with reading(item.name, "the DICOM header holds invalid values", "fix or re-export the file"):
        return _dicom_file(item, ds)


def _refuse_non_images(name: str, ds: Dataset) -> None:
    sop = str(ds.get("SOPClassUID", "") or getattr(ds.get("file_meta", None), "MediaStorageSOPClassUID", ""))
    if sop == _DIRECTORY_SOP or "DirectoryRecordSequence" in ds:
        raise NotAnImage("a DICOMDIR index (no pixels); load the folder it sits in instead")
    if sop == _SEGMENTATION_SOP:
        raise UnsupportedStudyError(
            f"{name}: this is a DICOM Segmentation object (a label map, not an image to screen); load the "
            "images it refers to instead"
        )
    if not ds.get("Rows") or not ds.get("Columns"):
        if "Image Storage" in UID(sop).name:
            raise StudyReadError(
                f"{name}: incomplete DICOM image ({UID(sop).name} without Rows/Columns): the file is "
                "truncated or was stripped of its image module; export it again"
            )
        raise NotAnImage("a DICOM object without image (no Rows/Columns: report, RT plan, waveform or index)")


def _dicom_file(item: Item, ds: Dataset) -> DicomFile:
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2") or "MONOCHROME2").strip()
    f = DicomFile(
        item=item,
        series_uid=str(ds.get("SeriesInstanceUID", "") or "").strip(),
        series_number=as_int(ds.get("SeriesNumber")),
        description=as_text(ds.get("SeriesDescription")) or as_text(ds.get("ProtocolName")),
        modality=as_text(ds.get("Modality")),
        photometric="RGB" if spp == 3 or photometric == "PALETTE COLOR" else photometric,
        rows=int(ds.Rows),
        columns=int(ds.Columns),
        samples_per_pixel=spp,
        sop_uid=as_text(ds.get("SOPInstanceUID")),
        instance=as_int(ds.get("InstanceNumber")) or 0,
        stored_range=stored_range(ds),
        modality_lut="ModalityLUTSequence" in ds and "RescaleSlope" not in ds,
        phi=phi_fields(ds),
    )
    transfer_syntax(ds, item.name)  # validates that the encoding is known
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if mosaic.is_mosaic(ds):
        f.frames = mosaic.mosaic_frames(f, ds, classic_frame(f, ds, 0))
    elif n_frames > 1 or "PerFrameFunctionalGroupsSequence" in ds:
        f.frames = dicom_multiframe.enhanced_frames(f, ds, n_frames)
    else:
        f.frames = [classic_frame(f, ds, 0)]
    return f
