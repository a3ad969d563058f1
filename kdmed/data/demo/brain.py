"""Synthetic FLAIR head volumes with glioma-like lesions, written in the BraTS 2021 layout.

Each case is ``brain/<case>/<case>_flair.nii.gz`` (float32, arbitrary scanner units, 0 outside the head)
and ``<case>_seg.nii.gz`` (uint8, BraTS labels: 1 necrotic core, 2 oedema, 4 enhancing tumour; all zero
for a normal case). Voxels are 1 mm; the arrays are stored in LPS-like order (affine ``diag(-1, -1, 1)``),
so a reader has to reorient them to RAS like a real scanner export.

The head is drawn analytically in a rotated, scaled and shifted frame: scalp, skull (bright diploe between
dark tables), subarachnoid CSF, a cortical grey-matter ribbon folded around sulci, white matter, deep grey
nuclei and lateral ventricles (dark on FLAIR, where CSF is nulled). Lesions add FLAIR-hyperintense oedema
around a heterogeneous core and push the surrounding anatomy aside (mass effect). Every case then gets the
same kind of acquisition: partial-volume blur, a smooth multiplicative bias field and Rician noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from kdmed import atomic
from kdmed.data.demo.common import (
    case_rng,
    gzip_bytes,
    require_int,
    reset_dir,
    smooth_noise,
    spread_flags,
)
from kdmed.errors import ConfigError

NECROTIC, OEDEMA, ENHANCING = 1, 2, 4  # BraTS 2021 label values
REFERENCE_SHAPE = (128, 128, 80)  # anatomy sizes below are in mm for this field of view


@dataclass(frozen=True)
class BrainDemoSpec:
    """How many synthetic FLAIR cases to write, and their array shape (voxels of 1 mm)."""

    normal_cases: int = 12
    abnormal_cases: int = 12
    shape: tuple[int, int, int] = REFERENCE_SHAPE

    def __post_init__(self) -> None:
        owner = "demo_data.brain"
        require_int(owner, "normal_cases", self.normal_cases, 0)
        require_int(owner, "abnormal_cases", self.abnormal_cases, 0)
        if self.normal_cases + self.abnormal_cases == 0:
            raise ConfigError(
                f"params: '{owner}.normal_cases' and '{owner}.abnormal_cases' are both 0; "
                "ask for at least one case."
            )
        if not isinstance(self.shape, list | tuple) or len(self.shape) != 3:
            raise ConfigError(
                f"params: '{owner}.shape' = {self.shape!r} is not allowed; expected three "
                "integers [x, y, z], e.g. [128, 128, 80]."
            )
        for axis, size in zip("xyz", self.shape, strict=True):
            require_int(owner, f"shape.{axis}", size, 32, 512)
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))


def case_id(index: int) -> str:
    return f"demo_{index:05d}"


def brain_affine(shape: tuple[int, int, int]) -> np.ndarray:
    """1 mm voxels, i towards patient left and j towards posterior (LPS order), centred on the origin."""
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    affine[:3, 3] = [(shape[0] - 1) / 2, (shape[1] - 1) / 2, -(shape[2] - 1) / 2]
    return affine


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    cz, sz, cx, sx, cy, sy = (
        math.cos(yaw),
        math.sin(yaw),
        math.cos(pitch),
        math.sin(pitch),
        math.cos(roll),
        math.sin(roll),
    )
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    return rz @ ry @ rx


@dataclass(frozen=True)
class _Lesion:
    centre: np.ndarray  # head frame, mm
    radius: float  # outer (oedema) radius, mm
    core: float  # core radius as a fraction of ``radius``
    necrosis: float  # necrotic radius as a fraction of the core (0: none)
    oedema_level: float  # FLAIR intensity relative to white matter
    core_level: float
    necrosis_level: float
    push: float  # mass effect strength, 0..1


def _head_frame(rng: np.random.Generator, shape: tuple[int, ...], scale: float) -> tuple[np.ndarray, ...]:
    """Voxel grid mapped into a per-case head frame (mm, x left, y posterior, z superior)."""
    axes = [np.arange(n, dtype=np.float32) - (n - 1) / 2 for n in shape]
    grid = np.ix_(*axes)
    shift = np.array([rng.uniform(-3, 3), rng.uniform(-2, 2), rng.uniform(-6, -2)]) * scale
    rot = _rotation(*np.deg2rad(rng.uniform([-6, -4, -3], [6, 4, 3])))
    # head frame = R^T (voxel - shift)
    return tuple(sum(float(rot[i, k]) * (grid[i] - float(shift[i])) for i in range(3)) for k in range(3))


def _sample_lesions(rng: np.random.Generator, axes: np.ndarray, scale: float) -> list[_Lesion]:
    lesions: list[_Lesion] = []
    radii = [rng.uniform(7.0, 18.0)] + ([rng.uniform(5.0, 11.0)] if rng.random() < 0.3 else [])
    for radius_mm in radii:
        radius = max(3.0, radius_mm * scale)
        for _ in range(200):  # rejection sampling; in practice a few tries
            # a point inside the brain ellipsoid, kept ~radius away from its surface and off the midline
            direction = rng.standard_normal(3)
            direction /= np.linalg.norm(direction)
            margin = 1.0 - (0.75 * radius + 2.0 * scale) / float(axes.min())
            centre = direction * rng.uniform(0.25, 1.0) ** (1 / 3) * max(margin, 0.05) * axes
            centre[0] = math.copysign(max(abs(centre[0]), 0.22 * axes[0]), centre[0])
            if np.sum((centre / axes) ** 2) > max(margin, 0.3) ** 2 or centre[2] < -0.45 * axes[2]:
                continue
            if all(np.linalg.norm(centre - o.centre) > radius + o.radius for o in lesions):
                break
        core = rng.uniform(0.3, 0.6)
        lesions.append(
            _Lesion(
                centre=centre,
                radius=radius,
                core=core,
                necrosis=0.0 if rng.random() < 0.35 else rng.uniform(0.35, 0.7),
                oedema_level=rng.uniform(1.6, 2.4),
                core_level=rng.uniform(1.3, 2.0),
                necrosis_level=rng.uniform(0.45, 1.5),
                push=rng.uniform(0.15, 0.4),
            )
        )
    return lesions


def _push(frame: tuple[np.ndarray, ...], lesions: list[_Lesion]) -> tuple[np.ndarray, ...]:
    """Sample anatomy nearer each lesion centre: tissue looks displaced outwards (mass effect).

    ``r_src = r (1 - m exp(-r^2 / 2 w^2))`` is monotonic in ``r`` for ``m < 1``, so nothing folds.
    """
    x, y, z = frame
    for lesion in lesions:
        cx, cy, cz = (float(v) for v in lesion.centre)
        dx, dy, dz = x - cx, y - cy, z - cz
        width = 1.3 * lesion.radius
        factor = 1.0 - lesion.push * np.exp(-(dx * dx + dy * dy + dz * dz) / (2 * width * width))
        x, y, z = cx + dx * factor, cy + dy * factor, cz + dz * factor
    return x, y, z


def _ellipsoid(
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    centre: tuple[float, float, float],
    semi: tuple[float, float, float],
) -> np.ndarray:
    return sum(((c - c0) / s) ** 2 for c, c0, s in zip((x, y, z), centre, semi, strict=True))


def _deep_structures(
    frame: tuple[np.ndarray, ...], rng: np.random.Generator, axes: np.ndarray, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """(ventricle mask, deep grey mask) from the (possibly pushed) head frame."""
    x, y, z = frame
    a, b, c = (float(v) for v in axes)
    size = rng.uniform(0.75, 1.45)  # ventricle size varies a lot with age
    offset, z0 = rng.uniform(2.5, 4.0) * scale, rng.uniform(0.05, 0.2) * c
    ventricles = np.zeros(np.broadcast_shapes(x.shape, y.shape, z.shape), dtype=bool)
    for side in (-1.0, 1.0):
        # frontal horns near the midline, atria further out; both ends curve down
        lateral = side * x - (offset + 0.15 * y)
        bend = 0.14 * c * (y / (0.5 * b)) ** 2
        semi = (3.3 * size * scale, 0.46 * b, 5.0 * size * scale)
        body = _ellipsoid(lateral, y, z - bend, (0.0, 0.05 * b, z0), semi)
        ventricles |= (body < 1) & (side * x > 0.8 * scale)  # the septum pellucidum keeps them apart
    ventricles |= _ellipsoid(x, y, z, (0.0, 0.08 * b, -0.1 * c), (1.1 * scale, 0.16 * b, 0.18 * c)) < 1
    deep = np.zeros_like(ventricles)
    for side in (-1.0, 1.0):
        deep |= _ellipsoid(x, y, z, (side * 0.2 * a, 0.12 * b, -0.1 * c), (0.15 * a, 0.17 * b, 0.2 * c)) < 1
        deep |= _ellipsoid(x, y, z, (side * 0.45 * a, -0.05 * b, -0.05 * c), (0.1 * a, 0.2 * b, 0.18 * c)) < 1
    return ventricles, deep & ~ventricles


def _lesion_fields(
    shape: tuple[int, ...], frame: tuple[np.ndarray, ...], lesion: _Lesion, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(irregular radius normalised to 1 at the oedema border, core texture) over a box around a lesion."""
    x, y, z = (f.astype(np.float32) for f in frame)
    dx, dy, dz = x - lesion.centre[0], y - lesion.centre[1], z - lesion.centre[2]
    r = np.sqrt(dx * dx + dy * dy + dz * dz) + 1e-3
    # lobulated outline: a few random low-order waves over the direction, plus finer bumps
    bumps = np.zeros(r.shape, dtype=np.float32)
    for _ in range(5):
        v = rng.standard_normal(3)
        v /= np.linalg.norm(v)
        bumps += np.cos(rng.uniform(1.5, 4.0) * (dx * v[0] + dy * v[1] + dz * v[2]) / r + rng.uniform(0, 6.3))
    bumps /= math.sqrt(2.5)  # unit std
    rough = smooth_noise(rng, shape, max(2.0, lesion.radius / 2.5))
    radius = lesion.radius * np.clip((1.0 + 0.13 * bumps) * (1.0 + 0.08 * rough), 0.6, 1.4)
    texture = smooth_noise(rng, shape, 2.5)
    return r / radius, texture


def _skull_and_scalp(
    rng: np.random.Generator, outside: np.ndarray, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """(image with the shells outside the brain, head mask): CSF, inner table, diploe, outer table, scalp."""
    bounds = np.cumsum(rng.uniform([1.4, 1.0, 1.4, 1.0, 3.5], [2.4, 1.5, 2.6, 1.6, 5.0])) * scale
    shell_levels = (0.28, 0.1, 0.75, 0.12, 1.1)
    image = np.zeros(outside.shape, dtype=np.float32)
    for outer, inner, level in zip(bounds[::-1], [*bounds[::-1][1:], 0.0], shell_levels[::-1], strict=True):
        image[(outside < outer) & (outside >= inner)] = level
    # subcutaneous fat is the bright inner half of the scalp
    image[(outside >= bounds[-2]) & (outside < bounds[-2] + 0.5 * (bounds[-1] - bounds[-2]))] = 1.35
    return image, outside < bounds[-1]


def _brain_tissue(
    rng: np.random.Generator,
    depth: np.ndarray,
    outline: np.ndarray,
    pushed: tuple[np.ndarray, ...],
    axes: np.ndarray,
    ventricles: np.ndarray,
    deep: np.ndarray,
    scale: float,
) -> np.ndarray:
    """FLAIR level relative to white matter: cortex folded around sulci, deep grey nuclei, CSF spaces."""
    shape = depth.shape
    sulci_field = smooth_noise(rng, shape, 4.5 * scale)
    sulcus_depth = (9.0 + 3.0 * outline) * scale
    grey_ribbon = rng.uniform(2.2, 3.2) * scale
    # the interhemispheric fissure runs from the surface down to the corpus callosum, lined by cortex
    above_callosum = ((pushed[1] / (0.6 * axes[1])) ** 2 + (pushed[2] / (0.42 * axes[2])) ** 2) > 1
    midline = np.abs(pushed[0])
    fissure = (midline < 1.0 * scale) & above_callosum
    grey = (depth < grey_ribbon) | ((np.abs(sulci_field) < 0.5) & (depth < sulcus_depth + grey_ribbon))
    grey |= (midline < 3.5 * scale) & above_callosum
    csf = ((np.abs(sulci_field) < 0.15) & (depth < sulcus_depth)) | fissure | ventricles
    grey_level = rng.uniform(1.3, 1.42)
    tissue = np.where(deep, 1.14, np.where(grey, grey_level, 1.0)).astype(np.float32)
    tissue *= 1.0 + 0.035 * smooth_noise(rng, shape, 5 * scale)
    tissue[csf] = np.where(ventricles[csf], 0.14, 0.3)  # FLAIR nulls free water; sulci keep partial volume
    return tissue


def _acquire(
    rng: np.random.Generator,
    noise_rng: np.random.Generator,
    image: np.ndarray,
    frame: tuple[np.ndarray, ...],
    axes: np.ndarray,
    head: np.ndarray,
) -> np.ndarray:
    """Partial-volume blur, a smooth multiplicative bias field, scanner scaling and Rician noise."""
    image = ndimage.gaussian_filter(image, 0.6)
    coords = [c / float(axes.max()) for c in frame]
    bias = sum(rng.normal(0, 1) * c for c in coords) + sum(
        rng.normal(0, 0.6) * c1 * c2 for i, c1 in enumerate(coords) for c2 in coords[i:]
    )
    image *= np.exp(rng.uniform(0.06, 0.16) * bias).astype(np.float32)
    white_matter = rng.uniform(150.0, 230.0)  # arbitrary scanner units
    image *= white_matter
    # magnitude of a complex signal with Gaussian noise in both channels, then the slight smoothing of
    # resampling to 1 mm isotropic voxels (as BraTS volumes are), which correlates neighbouring noise
    sigma = rng.uniform(0.03, 0.045) * white_matter
    real = image + noise_rng.standard_normal(image.shape, dtype=np.float32) * sigma
    imag = noise_rng.standard_normal(image.shape, dtype=np.float32) * sigma
    image = ndimage.gaussian_filter(np.sqrt(real * real + imag * imag), 0.7)
    return np.where(head, np.rint(image), 0.0).astype(np.float32)


def render_brain_case(
    spec: BrainDemoSpec, seed: int, index: int, abnormal: bool
) -> tuple[np.ndarray, np.ndarray]:
    """One case as arrays: (FLAIR float32, segmentation uint8), both of ``spec.shape``.

    Anatomy and acquisition come from the case's own generators, lesions from a separate one, so normal
    and abnormal cases share exactly the same distribution of everything but the lesion.
    """
    shape = spec.shape
    scale = min(s / r for s, r in zip(shape, REFERENCE_SHAPE, strict=True))
    anatomy_rng, lesion_rng, noise_rng = case_rng(seed, "brain", index).spawn(3)

    frame = _head_frame(anatomy_rng, shape, scale)
    x, y, z = frame
    size = anatomy_rng.uniform(0.92, 1.05) * anatomy_rng.uniform(0.97, 1.03, 3)
    axes = np.array([40.0, 48.0, 36.0]) * size * scale
    a_eff = axes[0] * (1.0 + 0.07 * y / axes[1])  # a little wider at the back
    rho = np.sqrt((x / a_eff) ** 2 + (y / axes[1]) ** 2 + (z / axes[2]) ** 2)
    outline = smooth_noise(anatomy_rng, shape, 18 * scale)
    rho = np.maximum(rho * (1.0 + 0.025 * outline), 1e-3)
    outside = np.sqrt(x * x + y * y + z * z) * (1.0 - 1.0 / rho)  # mm beyond the brain surface, radially

    lesions = _sample_lesions(lesion_rng, axes, scale) if abnormal else []
    pushed = _push(frame, lesions) if lesions else frame
    ventricles, deep = _deep_structures(pushed, anatomy_rng, axes, scale)
    image, head = _skull_and_scalp(anatomy_rng, outside, scale)
    brain = outside < 0
    tissue = _brain_tissue(anatomy_rng, -outside, outline, pushed, axes, ventricles, deep, scale)
    image[brain] = tissue[brain]

    seg = np.zeros(shape, dtype=np.uint8)
    for lesion in lesions:
        _paint_lesion(image, seg, lesion, frame, brain & ~ventricles, lesion_rng)
    seg[~brain] = 0
    return _acquire(anatomy_rng, noise_rng, image, frame, axes, head), seg


def _paint_lesion(
    image: np.ndarray,
    seg: np.ndarray,
    lesion: _Lesion,
    frame: tuple[np.ndarray, ...],
    tissue: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """Blend oedema, enhancing core and necrosis into ``image`` and label them in ``seg`` (in place)."""
    # work in the lesion's bounding box only
    full = np.broadcast_arrays(*frame)
    d2 = sum((f - float(c)) ** 2 for f, c in zip(full, lesion.centre, strict=True))
    inside = d2 < (1.6 * lesion.radius) ** 2  # outline <= 1.4 radius, soft edge 1.06 of that
    if not inside.any():
        return
    box = tuple(slice(int(idx.min()), int(idx.max()) + 1) for idx in np.nonzero(inside))
    sub_frame = tuple(f[box] for f in full)
    sub_shape = sub_frame[0].shape
    dist, texture = _lesion_fields(sub_shape, sub_frame, lesion, rng)
    core_t = lesion.core * (1.0 + 0.15 * texture)
    level = np.where(
        dist < core_t,
        lesion.core_level * (1.0 + 0.15 * texture),
        lesion.oedema_level * (1.0 + 0.06 * texture),
    )
    label = np.where(dist < 1.0, np.where(dist < core_t, ENHANCING, OEDEMA), 0)
    if lesion.necrosis > 0:
        necrotic = dist < lesion.necrosis * core_t
        level = np.where(necrotic, lesion.necrosis_level * (1.0 + 0.2 * texture), level)
        label = np.where(necrotic, NECROTIC, label)
    weight = np.clip((1.0 - dist) / 0.12 + 0.5, 0.0, 1.0) * tissue[box]
    image[box] = image[box] * (1.0 - weight) + level * weight
    label = np.where(tissue[box], label, 0).astype(np.uint8)
    seg[box] = np.maximum(seg[box], label)


def _nifti_bytes(array: np.ndarray, affine: np.ndarray) -> bytes:
    image = nib.Nifti1Image(array, affine)
    image.header.set_xyzt_units("mm", "sec")
    image.header.set_qform(affine, code=1)  # scanner coordinates
    image.header.set_sform(affine, code=1)
    return gzip_bytes(image.to_bytes())


def generate_brain(out_dir: Path, spec: BrainDemoSpec, seed: int) -> dict:
    """Write ``out_dir/brain/<case>/...`` (the folder is replaced) and return the case counts."""
    root = reset_dir(Path(out_dir) / "brain")
    affine = brain_affine(spec.shape)
    flags = spread_flags(spec.normal_cases, spec.abnormal_cases)
    for index, abnormal in enumerate(flags):
        flair, seg = render_brain_case(spec, seed, index, abnormal)
        case = case_id(index)
        folder = root / case
        folder.mkdir()
        atomic.write_bytes(folder / f"{case}_flair.nii.gz", _nifti_bytes(flair, affine))
        atomic.write_bytes(folder / f"{case}_seg.nii.gz", _nifti_bytes(seg, affine))
    return {"normal": spec.normal_cases, "abnormal": spec.abnormal_cases}
