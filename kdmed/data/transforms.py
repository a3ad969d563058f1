"""MONAI dictionary transforms shared by preprocessing (training data) and serving (uploads).

Each step is an array function plus a thin `MapTransform` wrapper, as in MONAI. The same
`build_volume_transform` / `build_image_transform` objects run in the `preprocess` stage and in
`kdmed.inference`, so a model sees uploads exactly as it saw its training data.

Geometry: volumes are read in canonical RAS voxel order; an axial slice `volume[:, :, z]` is shown in the
radiological convention (anterior at the top, patient's right on the left of the image), see `to_view`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import Compose, EnsureChannelFirstd, MapTransform

from kdmed.config import PreprocessConfig
from kdmed.contract import SCORED, Preprocessing, SlicePolicy
from kdmed.data.stain import reinhard
from kdmed.errors import StudyReadError

# ---------------------------------------------------------------------------------------------- arrays


def foreground_mask(volume: np.ndarray) -> np.ndarray:
    """Voxels that differ from the background value (the median of the volume's border voxels)."""
    border = np.concatenate(
        [volume[0].ravel(), volume[-1].ravel(), volume[:, 0].ravel(), volume[:, -1].ravel()]
    )
    background = float(np.median(border))
    scale = float(np.std(volume)) or 1.0
    return np.abs(volume - background) > 1e-3 * scale


def normalize_percentiles(
    image: np.ndarray, foreground: np.ndarray, lower: float, upper: float
) -> np.ndarray:
    """Scale to [0, 1] by percentiles taken inside the foreground only, so that a large empty background
    does not squash the tissue contrast; background is set to 0."""
    values = image[foreground]
    if values.size == 0:
        raise StudyReadError(
            "the study has no foreground voxels (an empty or constant image); nothing to score."
        )
    lo, hi = np.percentile(values, [lower, upper])
    if hi <= lo:
        hi = lo + 1.0
    out = np.clip((image - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
    out[~foreground] = 0.0
    return out


def square_box(foreground_2d: np.ndarray, margin: int) -> tuple[int, int, int, int]:
    """A square (row0, row1, col0, col1) box around the foreground, with margin, clipped by padding later."""
    rows = np.flatnonzero(foreground_2d.any(axis=1))
    cols = np.flatnonzero(foreground_2d.any(axis=0))
    if rows.size == 0:
        return 0, foreground_2d.shape[0], 0, foreground_2d.shape[1]
    r0, r1 = rows[0] - margin, rows[-1] + 1 + margin
    c0, c1 = cols[0] - margin, cols[-1] + 1 + margin
    side = max(r1 - r0, c1 - c0)
    rc, cc = (r0 + r1) / 2.0, (c0 + c1) / 2.0
    r0, c0 = int(round(rc - side / 2.0)), int(round(cc - side / 2.0))
    return r0, r0 + side, c0, c0 + side


def crop_padded(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Crop the last two axes to `box`, padding with zeros where the box leaves the image."""
    r0, r1, c0, c1 = box
    h, w = image.shape[-2:]
    out = np.zeros(image.shape[:-2] + (r1 - r0, c1 - c0), dtype=image.dtype)
    sr0, sr1, sc0, sc1 = max(r0, 0), min(r1, h), max(c0, 0), min(c1, w)
    out[..., sr0 - r0 : sr1 - r0, sc0 - c0 : sc1 - c0] = image[..., sr0:sr1, sc0:sc1]
    return out


def to_view(slice_xy: np.ndarray) -> np.ndarray:
    """RAS axial slice (x, y) -> radiological view (rows anterior->posterior, columns right->left)."""
    return np.ascontiguousarray(slice_xy.T[::-1, :])


def from_view(view: np.ndarray) -> np.ndarray:
    """Inverse of `to_view`: a view-ordered map back to the slice's (x, y) grid."""
    return np.ascontiguousarray(view[::-1, :].T)


def take_slice(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    """The 2D view of slice `index` along `axis` of a (C, X, Y, Z) array -> (C, rows, cols)."""
    plane = np.take(volume, index, axis=axis + 1)
    return np.stack([to_view(c) for c in plane])


def resize(image: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    """(C, H, W) -> (C, size, size); area-averaging when shrinking images, nearest for masks."""
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
    if nearest:
        out = F.interpolate(tensor, size=(size, size), mode="nearest")
    elif tensor.shape[-1] > size and tensor.shape[-2] > size:
        out = F.interpolate(tensor, size=(size, size), mode="area")
    else:
        out = F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False)
    return out[0].numpy()


def resize_map(anomaly_map: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) float map -> `shape` with bilinear interpolation (maps are continuous, masks are not)."""
    tensor = torch.from_numpy(np.ascontiguousarray(anomaly_map, dtype=np.float32))[None, None]
    return F.interpolate(tensor, size=shape, mode="bilinear", align_corners=False)[0, 0].numpy()


def to_unit_range(image: np.ndarray) -> np.ndarray:
    """A 2D image's values to [0, 1]: 8-bit by 255, wider types by their own min/max."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    image = image.astype(np.float32)
    if not np.isfinite(image).all():
        raise StudyReadError("the image holds NaN or infinite values; re-export it.")
    lo, hi = float(image.min()), float(image.max())
    if lo >= 0.0 and hi <= 1.0:
        return image
    if lo >= 0.0 and hi <= 255.0 and np.all(image == np.round(image)):
        return image / 255.0
    return (image - lo) / ((hi - lo) or 1.0)


# ---------------------------------------------------------------------------------- dictionary wrappers


def normalize_robust(image: np.ndarray, foreground: np.ndarray, iqr_multiple: float) -> np.ndarray:
    """The foreground's median to 0.5 and `iqr_multiple` x its interquartile range to a full unit,
    clipped to [0, 1]; background 0. The median and quartiles are those of the (mostly healthy) tissue,
    so a large bright lesion does not rescale the rest as an upper percentile would."""
    values = image[foreground]
    if values.size == 0:
        raise StudyReadError(
            "the study has no foreground voxels (an empty or constant image); nothing to score."
        )
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    spread = iqr_multiple * float(q3 - q1) or 1.0
    out = np.clip(0.5 + (image - median) / spread, 0.0, 1.0).astype(np.float32)
    out[~foreground] = 0.0
    return out


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
                    cropped = crop_padded(lesion[None].astype(np.float32), box)
                    item["mask"] = resize(cropped, self.image_size, nearest=True)[0] > 0.5
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
            EnsureChannelFirstd(keys, channel_dim="no_channel", allow_missing_keys=True),
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
    """A 2D image (H, W) or (H, W, C) -> (C, S, S) in [0, 1], colour-normalised when asked
    (`stain_normalization`, RGB only); its mask -> (S, S) bool."""

    def __init__(self, image_size: int, stain_normalization: str = "none"):
        super().__init__(["image"])
        self.image_size = image_size
        self.stain_normalization = stain_normalization

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        image = np.asarray(d["image"])
        if image.ndim == 2:
            image = image[None]
        elif image.ndim == 3 and image.shape[-1] in (3, 4):
            image = np.moveaxis(image[..., :3], -1, 0)
        else:
            raise StudyReadError(f"expected a 2D grey or RGB image, got an array of shape {image.shape}.")
        d["original_shape"] = image.shape[-2:]
        d["image"] = resize(to_unit_range(image), self.image_size)
        if self.stain_normalization == "reinhard" and d["image"].shape[0] == 3:
            d["image"] = reinhard(d["image"])
        if "mask" in d:
            mask = np.asarray(d["mask"])
            mask = mask.max(axis=-1) if mask.ndim == 3 else mask
            if mask.shape != tuple(d["original_shape"]):
                raise StudyReadError(
                    f"mask shape {mask.shape} differs from image shape {tuple(d['original_shape'])}."
                )
            d["mask"] = resize((mask > 0)[None].astype(np.float32), self.image_size, nearest=True)[0] > 0.5
        return d


def build_image_transform(image_size: int, stain_normalization: str = "none") -> Compose:
    """Load -> channels first -> [0, 1] -> resize (-> colour normalisation); masks follow with
    nearest-neighbour."""
    return Compose([LoadStudyd(["image", "mask"]), PrepareImaged(image_size, stain_normalization)])


def collapse_grey(image: np.ndarray) -> np.ndarray:
    """(C, H, W): grey images stored as RGB (three identical channels) -> one channel."""
    if image.shape[0] == 3 and np.array_equal(image[0], image[1]) and np.array_equal(image[1], image[2]):
        return image[:1]
    return image


def match_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """(C, H, W) -> (`channels`, H, W) as the model was trained: grey repeated to RGB, RGB stored grey
    collapsed, true colour averaged to grey for a grey model."""
    image = collapse_grey(image) if channels == 1 else image
    if image.shape[0] == channels:
        return image
    if image.shape[0] == 1:
        return np.repeat(image, channels, axis=0)
    return image.mean(axis=0, keepdims=True)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[0, 1] float -> uint8, the quantisation every stored and served model input goes through."""
    return np.clip(np.round(np.asarray(image) * 255.0), 0, 255).astype(np.uint8)


def to_model_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 or float (B, C, H, W) batch -> float32 (B, 3, H, W) in [0, 1]; grey repeated to 3 channels."""
    if images.dtype == torch.uint8:
        images = images.float() / 255.0
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return images.contiguous()
