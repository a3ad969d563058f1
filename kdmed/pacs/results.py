"""kdmed's findings as standard DICOM objects a viewer shows: a Segmentation and a Key Object Selection.

- The SEG (highdicom, PS3.3 A.51) marks, on the scored series' own frames, the pixels of every flagged
  slice whose anomaly map reaches the operating threshold (STPM and RD4AD: the image score is the map's
  maximum, so every flagged slice has such pixels; MKD: its map's calibrated normal level, `map_floor`,
  since its score is not on the map's scale). One segment per model, referencing the source instances.
- The KOS (PS3.3 A.35.4) selects the flagged instances, titled "Of Interest", and says in its
  description kdmed's version, which model (method, dataset, training date), which threshold, and each
  flagged slice's score; a study with nothing flagged gets one too ("For Referring Provider", the
  highest-scoring instance, saying that nothing was flagged).
Both get new UIDs and copy only the patient and study modules of the source (highdicom does), nothing else.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kdmed.pacs.client import PacsError

__all__ = ["SEG_SERIES_NUMBER", "KOS_SERIES_NUMBER", "flagged_mask", "key_objects", "segmentation"]

SEG_SERIES_NUMBER, KOS_SERIES_NUMBER = 9901, 9902
MANUFACTURER = "kdmed"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kdmed")
    except PackageNotFoundError:
        return "0+unknown"


def _number(value: Any) -> str:
    return "none" if value is None else f"{value:.4g}"


def by_instance_number(datasets: list) -> dict[int, Any]:
    numbers: dict[int, Any] = {}
    for ds in datasets:
        number = int(getattr(ds, "InstanceNumber", -1))
        if number in numbers:
            raise PacsError(f"two instances of series {ds.SeriesInstanceUID} share InstanceNumber {number}; "
                            "kdmed cannot tell which slice is which")  # fmt: skip
        numbers[number] = ds
    return numbers


def flagged_mask(report: dict[str, Any], maps: np.ndarray, level: float) -> dict[int, np.ndarray]:
    """InstanceNumber -> (rows, cols) bool mask, for each flagged slice of a `kdmed score` volume report
    whose maps (`maps.npz`, input grid (cols, rows, slices)) reach `level`."""
    if report.get("kind") != "volume" or report["input"]["slice_axis"] != 2:
        raise PacsError("only axial single-frame series are written back as SEG (the scored slices must be "
                        "the DICOM instances); this series was scored along another axis")  # fmt: skip
    masks = {}
    for entry in report["slices"]:
        if entry.get("flagged") and "instance_number" in entry:
            masks[int(entry["instance_number"])] = level <= maps[:, :, entry["input_index"]].T
    return masks


def map_level(report: dict[str, Any], checkpoint) -> float:
    calibration = checkpoint.serving.calibration
    return calibration.map_floor if report["model"]["method"] == "mkd" else float(report["threshold"])


def segmentation(sources: list, masks: dict[int, np.ndarray], report: dict[str, Any]):
    """A binary DICOM SEG of `masks` on the frames of `sources` (the scored series' instances)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    numbered = by_instance_number(sources)
    # the instances of the scored volume only (a 4D series repeats every position once per time point)
    scored = {int(e["instance_number"]) for e in report["slices"] if "instance_number" in e}
    ordered = [numbered[n] for n in sorted(numbered) if n in scored]
    if not ordered:
        raise PacsError("the report names none of the series' instances; cannot place a SEG on them")
    pixels = np.zeros((len(ordered), int(ordered[0].Rows), int(ordered[0].Columns)), np.uint8)
    for k, ds in enumerate(ordered):
        mask = masks.get(int(ds.InstanceNumber))
        if mask is not None:
            if mask.shape != pixels.shape[1:]:
                raise PacsError(f"map of shape {mask.shape} does not fit instance {ds.InstanceNumber} "
                                f"({pixels.shape[1]} x {pixels.shape[2]})")  # fmt: skip
            pixels[k] = mask
    model = report["model"]
    algorithm = hd.AlgorithmIdentificationSequence(
        name=f"kdmed {model['method']} ({model['dataset']})",
        version=_version(),
        family=codes.cid7162.ArtificialIntelligence,
    )
    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=f"kdmed {model['method']} anomaly",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
    )
    seg = hd.seg.Segmentation(
        source_images=ordered,
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment],
        series_instance_uid=generate_uid(),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=f"kdmed {model['method']}",
        software_versions=_version(),
        device_serial_number="kdmed",
        content_description=f"kdmed {model['method']} flagged regions",
        omit_empty_frames=False,
    )
    seg.SeriesDescription = f"kdmed {model['method']} flagged regions"
    return seg


def key_objects(sources: list, report: dict[str, Any]):
    """A Key Object Selection whose description names kdmed's version, the model, its threshold and the
    scores: titled "Of Interest" over the flagged instances; when none is flagged, titled "For Referring
    Provider" over the highest-scoring scored instance (or the first one when no slice could be scored),
    saying so, so that every scored study carries kdmed's answer."""
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    numbered = by_instance_number(sources)
    listed = [e for e in report["slices"] if int(e.get("instance_number", -1)) in numbered]
    flagged = [e for e in listed if e.get("flagged")]
    model = report["model"]
    scores = ", ".join(f"#{e['instance_number']} {e['score']:.4g}" for e in flagged[:40])
    text = (
        f"kdmed {_version()} {model['method']} trained on {model['dataset']} at {model.get('trained_at')}; "
    )
    text += f"threshold {_number(report['threshold'])}; study score {_number(report.get('study_score'))}; "
    if flagged:
        title, chosen = codes.DCM.OfInterest, flagged
        text += f"flagged instances: {scores}"
    else:
        scored = [e for e in listed if e.get("score") is not None]
        top = max(scored, key=lambda e: e["score"]) if scored else None
        title = codes.DCM.ForReferringProvider
        chosen = [top] if top is not None else [{"instance_number": min(numbered)}]
        text += (f"no instance flagged; highest score #{top['instance_number']} {top['score']:.4g}" if top
                 else "no slice could be scored (all outside the model's slice policy or too little tissue)")  # fmt: skip
    evidence = [numbered[int(e["instance_number"])] for e in chosen]
    selection = hd.ko.KeyObjectSelection(
        document_title=title, referenced_objects=evidence, description=text[:1024]
    )
    return hd.ko.KeyObjectSelectionDocument(
        evidence=evidence,
        content=selection,
        series_instance_uid=generate_uid(),
        series_number=KOS_SERIES_NUMBER,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=MANUFACTURER,
    )
