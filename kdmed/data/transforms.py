"""MONAI dictionary transforms shared by preprocessing (training data) and serving (uploads).

Each step is an array function (`kdmed.data.arrays`) plus a thin `MapTransform` wrapper, as in MONAI. The same
`build_volume_transform` / `build_image_transform` objects run in the `preprocess` stage and in
`kdmed.inference`, so a model sees uploads exactly as it saw its training data.

Geometry: volumes are read in canonical RAS voxel order; an axial slice `volume[:, :, z]` is shown in the
radiological convention (anterior at the top, patient's right on the left of the image), see `to_view`.

MONAI serves here as the dictionary-transform protocol (`MapTransform`, `Compose` over one dict per
study, then one per slice); the arrays stay NumPy throughout (no MetaTensor), so the same functions serve
preprocessing, scoring and display. The array names are re-exported from here for existing importers.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
from monai.transforms import Compose, MapTransform

from kdmed.config import PreprocessConfig
from kdmed.contract import SCORED, Preprocessing, SlicePolicy
from kdmed.data.arrays import (
    center_crop,
    collapse_grey,
    crop_padded,
    foreground_mask,
    from_view,
    match_channels,
    normalize_percentiles,
    normalize_robust,
    resize,
    resize_map,
    resize_mask,
    square_box,
    take_slice,
    to_model_input,
    to_uint8,
    to_unit_range,
    to_view,
)
from kdmed.data.stain import reinhard
from kdmed.errors import StudyReadError

__all__ = [  # the wrappers, and the array functions that importers still take from here
    "AddChanneld",
    "BrainMaskd",
    "CropSquareForegroundd",
    "ExtractSlicesd",
    "LoadStudyd",
    "NormalizeForegroundd",
    "PrepareImaged",
    "ResampleIsotropicd",
    "build_image_transform",
    "build_volume_transform",
    "collapse_grey",
    "crop_padded",
    "foreground_mask",
    "from_view",
    "match_channels",
    "normalize_percentiles",
    "normalize_robust",
    "resize",
    "center_crop",
    "resize_map",
    "resize_mask",
    "square_box",
    "take_slice",
    "to_model_input",
    "to_uint8",
    "to_unit_range",
    "to_view",
    "volume_steps",
]


class NormalizeForegroundd(MapTransform):
    """Intensity normalisation inside the foreground (non-background voxels): percentiles, or the robust
    median / interquartile rule. No separate brain mask is used, because uploads come without one and
    serving must match training exactly."""

    def __init__(self, keys, settings: Preprocessing | PreprocessConfig):
        super().__init__(keys, allow_missing_keys=False)
        self.settings = settings

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        s = self.settings
        for key in self.key_iterator(d):
            image = np.asarray(d[key], dtype=np.float32)
            foreground = foreground_mask(image[0])[None]
            if s.normalization == "robust":
                d[key] = normalize_robust(image, foreground, s.robust_iqr_multiple)
            else:
                d[key] = normalize_percentiles(image, foreground, s.lower_percentile, s.upper_percentile)
            d["foreground"] = foreground[0]
        return d


class CropSquareForegroundd(MapTransform):
    """Crop every slice plane (the two axes other than the slice axis) to one square box around the
    volume's foreground, so slices keep their aspect ratio when resized; records the box for inversion."""

    def __init__(self, keys, axis: int, margin: int, enabled: bool = True):
        super().__init__(keys, allow_missing_keys=True)
        self.axis, self.margin, self.enabled = axis, margin, enabled

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        view_shape = take_slice(d["foreground"][None], self.axis, 0).shape[-2:]
        if self.enabled:
            projected = np.stack(
                [
                    take_slice(d["foreground"][None], self.axis, i)[0]
                    for i in range(d["foreground"].shape[self.axis])
                ]
            ).any(axis=0)
            box = square_box(projected, self.margin)
        else:
            box = (0, view_shape[0], 0, view_shape[1])
        d["crop_box"] = box
        d["view_shape"] = view_shape
        return d


class ExtractSlicesd(MapTransform):
    """Turn a (C, X, Y, Z) volume dict into one dict per slice of the volume, each with its status under
    the slice policy (`kdmed.contract.SlicePolicy.status`). Every slice carries its cropped
    full-resolution `view`, its lesion `label` (when a mask is given) and its foreground pixel count; only
    slices the policy admits are resized into a model `image` (and `mask`). Preprocessing keeps those,
    serving scores those and shows the others as outside the policy: one rule for both."""

    def __init__(self, policy: SlicePolicy, image_size: int):
        super().__init__(["image"])
        self.policy, self.image_size = policy, image_size

    def __call__(self, data: Mapping[Hashable, object]) -> list[dict]:
        image, box = data["image"], data["crop_box"]
        seg = data.get("mask")
        out = []
        for index in range(image.shape[self.policy.axis + 1]):
            foreground = take_slice(data["foreground"][None], self.policy.axis, index)[0]
            lesion = take_slice(np.asarray(seg), self.policy.axis, index)[0] > 0 if seg is not None else None
            status = self.policy.status(index, int(foreground.sum()))
            view = crop_padded(take_slice(image, self.policy.axis, index), box)
            item = {
                "slice": index,
                "status": status,
                "label": int(bool(lesion.any())) if lesion is not None else 0,
                "foreground_pixels": int(foreground.sum()),
                "view": view,
            }
            if status == SCORED:
                item["image"] = resize(view, self.image_size)
                if lesion is not None:
                    item["mask"] = resize_mask(crop_padded(lesion[None], box)[0], self.image_size)
            out.append(item)
        return out


class LoadStudyd(MapTransform):
    """Read studies through `kdmed.io.load_study` (the app's reader too); keeps the affine and metadata."""

    def __init__(self, keys, allow_missing_keys: bool = True):
        super().__init__(keys, allow_missing_keys=allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        from kdmed.io import Study, load_study

        d = dict(data)
        for key in self.key_iterator(d):
            if d[key] is None or (isinstance(d[key], str) and not d[key]):
                d.pop(key)
                continue
            study = d[key] if isinstance(d[key], Study) else load_study(d[key])
            d[key] = study.array
            d[f"{key}_study"] = study
        return d


class AddChanneld(MapTransform):
    """(X, Y, Z) -> (1, X, Y, Z) for the keys present: plain NumPy, no MetaTensor round trip."""

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = np.asarray(d[key])[None]
        return d


class BrainMaskd(MapTransform):
    """Training data only (IXI): voxels outside the subject's brain parcellation (`brain_mask` <= 0) get
    the background value 0, so healthy heads look like the skull-stripped volumes a model is served."""

    def __init__(self):
        super().__init__(["image"])

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        if "brain_mask" not in d:
            return d
        brain = np.asarray(d.pop("brain_mask")) > 0
        if brain.shape != np.asarray(d["image"]).shape:
            raise StudyReadError(
                f"brain mask shape {brain.shape[1:]} differs from the volume's {np.asarray(d['image']).shape[1:]}"
            )
        d["image"] = np.where(brain, d["image"], 0.0).astype(np.float32)
        return d


class ResampleIsotropicd(MapTransform):
    """Volumes to `mm` isotropic voxels (trilinear for the image, nearest for masks), from the loaded
    study's spacing; identity when the grid already has that spacing or `mm` is 0."""

    def __init__(self, mm: float):
        super().__init__(["image", "mask", "brain_mask"], allow_missing_keys=True)
        self.mm = mm

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        if not self.mm:
            return d
        zoom = np.asarray(d["image_study"].spacing[:3], dtype=np.float64) / self.mm
        if np.allclose(zoom, 1.0, atol=1e-3):
            return d
        from scipy import ndimage

        for key in self.key_iterator(d):
            order = 1 if key == "image" else 0
            d[key] = np.stack([ndimage.zoom(np.asarray(c), zoom, order=order) for c in np.asarray(d[key])])
        return d


def volume_steps(settings: Preprocessing | PreprocessConfig, policy: SlicePolicy) -> Compose:
    """The whole-volume steps: load -> channel first -> (brain mask, training only) -> resample ->
    foreground normalisation -> square foreground crop box. The result dict holds `image`, `foreground`,
    `crop_box` and `view_shape`. `settings`: the checkpoint's `Preprocessing` when serving, params'
    `preprocess` section when preprocessing (the same fields)."""
    keys = ["image", "mask", "brain_mask"]
    return Compose(
        [
            LoadStudyd(keys),
            AddChanneld(keys, allow_missing_keys=True),
            BrainMaskd(),
            ResampleIsotropicd(settings.resample_mm),
            NormalizeForegroundd(["image"], settings),
            CropSquareForegroundd(
                ["image"], axis=policy.axis, margin=settings.crop_margin, enabled=settings.crop_foreground
            ),
        ]
    )


def build_volume_transform(
    settings: Preprocessing | PreprocessConfig, policy: SlicePolicy, image_size: int
) -> Compose:
    """`volume_steps` then one dict per slice (`ExtractSlicesd`)."""
    return Compose([volume_steps(settings, policy), ExtractSlicesd(policy, image_size)], map_items=False)


class PrepareImaged(MapTransform):
    """A 2D image (H, W) or (H, W, C) -> (C, S, S) in [0, 1]: its central `center_crop` fraction (1 keeps
    it whole), resized, colour-normalised when asked (`stain_normalization`, RGB only); its mask follows
    the same crop -> (S, S) bool. `original_shape` is the shape after the crop."""

    def __init__(self, image_size: int, stain_normalization: str = "none", center_crop: float = 1.0):
        super().__init__(["image"])
        self.image_size = image_size
        self.stain_normalization = stain_normalization
        self.center_crop = center_crop

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        image = np.asarray(d["image"])
        if image.ndim == 2:
            image = image[None]
        elif image.ndim == 3 and image.shape[-1] in (3, 4):
            image = np.moveaxis(image[..., :3], -1, 0)
        else:
            raise StudyReadError(f"expected a 2D grey or RGB image, got an array of shape {image.shape}.")
        uncropped = image.shape[-2:]
        image = center_crop(image, self.center_crop)
        d["original_shape"] = image.shape[-2:]
        d["image"] = resize(to_unit_range(image), self.image_size)
        if self.stain_normalization == "reinhard" and d["image"].shape[0] == 3:
            d["image"] = reinhard(d["image"])
        if "mask" in d:
            mask = np.asarray(d["mask"])
            mask = mask.max(axis=-1) if mask.ndim == 3 else mask
            if mask.shape != tuple(uncropped):
                raise StudyReadError(f"mask shape {mask.shape} differs from image shape {tuple(uncropped)}.")
            d["mask"] = resize_mask(center_crop(mask, self.center_crop), self.image_size)
        return d


def build_image_transform(
    image_size: int, stain_normalization: str = "none", center_crop: float = 1.0
) -> Compose:
    """Load -> channels first -> [0, 1] -> central crop -> resize (-> colour normalisation); masks follow
    with nearest-neighbour."""
    return Compose(
        [LoadStudyd(["image", "mask"]), PrepareImaged(image_size, stain_normalization, center_crop)]
    )
