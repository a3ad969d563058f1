"""Which trained models fit an upload, and which one to preselect, with the reason in words.

A model fits when it scores the upload's kind (a checkpoint's `serving.kind`: "volume" for 3D volumes,
"image" for 2D images; a study's `is_volume`) and nothing says the modality differs: the upload's DICOM
modality (MR; OPT/OCT; SM, GM or XC microscopy; CT) against the modality its training dataset is known
for (brain, BraTS and IXI datasets are MR, OCT datasets OCT, blood-cell datasets colour microscopy; an
unknown dataset name says nothing). A NIfTI file records no modality. For 2D images, colour against
greyscale also decides (a model trained on colour microscopy does not fit a grey OCT scan) unless the
modalities are known to agree. Among the models that fit, the best evidence wins (the modality known to
match, then colour), then the newest. Pure: no files, no Streamlit.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["ModelChoice", "Upload", "choose_models", "dataset_modality", "upload_modality"]

MR, OCT, MICROSCOPY, CT = "MR", "OCT", "microscopy", "CT"
# dataset-name words (prefixes, so that "oct2017" and "brats21" count) -> the modality they imply
DATASET_WORDS = {
    MR: ("brain", "brats", "ixi", "mri", "flair"),
    OCT: ("oct",),
    MICROSCOPY: ("wbc", "pbc", "blood", "cell", "leukocyte", "histo", "patho"),
}
DATASET_EXACT = {"mr": MR, "t1": MR, "t2": MR, "ct": CT}
# DICOM Modality (0008,0060) -> the same names; OT (other) and SC say nothing
DICOM_MODALITIES = {"MR": MR, "OPT": OCT, "OCT": OCT, "SM": MICROSCOPY, "GM": MICROSCOPY, "XC": MICROSCOPY,
                    "CT": CT}  # fmt: skip
UNINFORMATIVE = {"", "OT", "SC"}
COLOUR_SHARE = 0.01  # a 2D image is colour when its channels differ by more than 1 % of its range on average


def dataset_modality(dataset: str) -> str | None:
    """The modality a training dataset's name implies ("brain_mri_2d" -> MR), None when it says nothing."""
    words = [w for w in re.split(r"[^a-z0-9]+", dataset.lower()) if w]
    for word in words:
        if word in DATASET_EXACT:
            return DATASET_EXACT[word]
        for modality, prefixes in DATASET_WORDS.items():
            if word.startswith(prefixes):
                return modality
    return None


def upload_modality(code: str | None) -> str | None:
    """The modality of a DICOM Modality code ("OPT" -> OCT); other codes as they are; None if unknown."""
    code = (code or "").strip().upper()
    return None if code in UNINFORMATIVE else DICOM_MODALITIES.get(code, code)


def is_colour(array: np.ndarray) -> bool:
    """True for an (H, W, 3) image whose channels really differ (a grey image saved as RGB is grey)."""
    a = np.asarray(array)
    if a.ndim != 3 or a.shape[-1] < 3:
        return False
    step = max(1, max(a.shape[:2]) // 512)
    a = a[::step, ::step, :3].astype(np.float32)
    spread = float(a.max() - a.min()) or 1.0
    return float(np.abs(a - a.mean(axis=-1, keepdims=True)).mean()) > COLOUR_SHARE * spread


@dataclass(frozen=True)
class Upload:
    """What matters about an upload for choosing a model."""

    is_volume: bool
    modality: str | None  # `upload_modality` of its DICOM Modality; None: not recorded (NIfTI, PNG)
    colour: bool | None  # 2D images only

    @classmethod
    def of(cls, study) -> Upload:
        """The traits of a loaded `kdmed.io.Study`."""
        volume = bool(study.is_volume)
        return cls(
            volume, upload_modality(study.metadata.modality), None if volume else is_colour(study.array)
        )

    def describe(self) -> str:
        """E.g. "a 3D MR volume", "a 2D colour image (no modality recorded)"."""
        named = f"{self.modality} " if self.modality else ""
        if self.is_volume:
            what = f"a 3D {named}volume"
        else:
            what = f"a 2D {'colour' if self.colour else 'grey'} {named}image"
        return what if self.modality else f"{what} (no modality recorded)"


@dataclass(frozen=True)
class Fit:
    """One catalogue entry against the upload: whether it fits, how strongly, and why (not)."""

    position: int  # in the catalogue given to `choose_models`
    fits: bool
    evidence: int  # 2: the modality is known to match; +1: colour matches (2D); 0: only the kind
    reason: str


@dataclass(frozen=True)
class ModelChoice:
    """The models that fit (catalogue positions, best first), the preselected one and why, and every
    model's reason (shown when none fits)."""

    upload: Upload
    fitting: tuple[int, ...]
    preselected: int | None
    why: str
    reasons: tuple[str, ...]  # one per catalogue entry, in catalogue order


def _trained_on(header) -> str:
    """E.g. "3D MR volumes", "2D colour microscopy images", "3D volumes (dataset 'demo')"."""
    modality = dataset_modality(header.card.dataset)
    named = f"{modality} " if modality else ""
    if header.serving.kind == "volume":
        what = f"3D {named}volumes"
    else:
        colour = "colour " if header.serving.preprocessing.channels >= 3 else "grey "
        what = f"2D {colour}{named}images"
    return what if modality else f"{what} (dataset '{header.card.dataset}', modality unknown)"


def _fit(position: int, header, upload: Upload) -> Fit:
    volume_model = header.serving.kind == "volume"
    trained_on = _trained_on(header)
    if volume_model != upload.is_volume:
        return Fit(position, False, 0, f"scores {trained_on}; the upload is {upload.describe()}")
    modality = dataset_modality(header.card.dataset)
    if modality and upload.modality and modality != upload.modality:
        return Fit(position, False, 0, f"trained on {trained_on}; the upload is {upload.describe()}")
    evidence = 2 if modality and modality == upload.modality else 0
    if upload.colour is not None:
        colour_model = header.serving.preprocessing.channels >= 3
        if colour_model != upload.colour and evidence < 2:
            return Fit(position, False, 0, f"trained on {trained_on}; the upload is {upload.describe()}")
        evidence += int(colour_model == upload.colour)
    return Fit(
        position,
        True,
        evidence,
        f"the upload is {upload.describe()} and this model was trained on {trained_on}",
    )


def choose_models(headers: Sequence, upload: Upload) -> ModelChoice:
    """Rank catalogue entries (`kdmed.contract.CheckpointHeader`s, newest first as `model_catalogue` lists
    them) against `upload`: those that fit, best evidence first, then newest (ties keep catalogue order)."""
    fits = [_fit(k, header, upload) for k, header in enumerate(headers)]
    newest = sorted(
        (f for f in fits if f.fits), key=lambda f: headers[f.position].card.trained_at, reverse=True
    )
    fitting = sorted(newest, key=lambda f: -f.evidence)  # stable: the newest first among equals
    reasons = tuple(f.reason for f in fits)
    if not fitting:
        why = f"none of the {len(headers)} models fits {upload.describe()}"
        return ModelChoice(upload, (), None, why, reasons)
    best = fitting[0]
    equally = sum(f.evidence == best.evidence for f in fitting)
    if len(fitting) == 1:
        rank = f"the only one of {len(headers)} that fits"
    elif equally == len(fitting):
        rank = f"newest of {len(fitting)} that fit"
    elif equally == 1:
        rank = f"the closest match of {len(fitting)} that fit"
    else:
        rank = f"newest of the {equally} closest matches ({len(fitting)} fit)"
    name = headers[best.position].card.name
    why = f"preselected {name}: {best.reason}; {rank}"
    return ModelChoice(upload, tuple(f.position for f in fitting), best.position, why, reasons)
