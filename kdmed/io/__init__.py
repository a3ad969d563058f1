"""Reading studies: one entry point that turns a NIfTI file, a DICOM series, a zip or upload, or a 2D image
into a correct voxel array with its geometry.

    from kdmed.io import load_study
    study = load_study("path/to/dicom_folder")       # Study: array (X, Y, Z) float32 RAS, affine, ...
    study.grid.array(map_ras)                        # a RAS array back on the input's own voxel grid
    study.series                                     # (SeriesInfo, ...) every series in the source
    series = list_series(upload_bytes)               # [SeriesInfo, ...]
    summary = inspect_source(paths, series_uid=uid)  # JSON-serialisable, no identifying fields
    images = list_images("path/to/folder")           # [Item, ...] when the folder holds only 2D images

Every failure a user can cause raises `kdmed.errors.StudyReadError` (or `UnsupportedStudyError`).
"""

from kdmed.io.grid import InputGrid
from kdmed.io.limits import ReadLimits
from kdmed.io.load import inspect_source, list_images, list_series, load_study
from kdmed.io.sniff import DICOM_KINDS, HEAD_BYTES, IMAGE_KINDS, NIFTI_KINDS, Kind, sniff
from kdmed.io.sources import Item
from kdmed.io.study import SeriesInfo, Study, StudyMetadata

__all__ = [
    "DICOM_KINDS",
    "HEAD_BYTES",
    "IMAGE_KINDS",
    "NIFTI_KINDS",
    "Kind",
    "InputGrid",
    "Item",
    "ReadLimits",
    "SeriesInfo",
    "Study",
    "StudyMetadata",
    "inspect_source",
    "list_images",
    "list_series",
    "load_study",
    "sniff",
]
