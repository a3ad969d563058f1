"""Synthetic retinal OCT B-scans in the BMAD folder layout (``train/good``, ``valid|test/good|Ungood``).

A scan is built in linear reflectivity, then passed through the same "acquisition" for every image:
multiplicative speckle, a noise floor, vignetting, log compression and a slight blur. The retina follows
a gently curved, tilted Bruch's membrane; its layers (bright RNFL, dark nuclear layers, bright
ellipsoid/RPE complex) thin into a foveal pit whose position, width and depth vary; the choroid below
fades into the dark sclera. Abnormal scans carry intraretinal cysts and/or a subretinal detachment (dark,
smooth-edged pockets that lift the layers above them; shed outer segments line a detachment's roof) or
drusen (domes of moderately reflective material under an elevated RPE). The mask covers the fluid
pockets, or the drusen with the RPE band lying on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from kdmed import atomic
from kdmed.data.demo.common import (
    case_rng,
    encode_image,
    require_int,
    reset_dir,
    smooth_noise,
    to_uint8,
)

ABNORMAL_KINDS = ("fluid", "drusen")
REFERENCE_SIZE = (256, 384)  # (height, width) the pixel sizes below are written for

# Layers from the vitreous down, with (reflectivity, thickness away from the fovea at the reference size).
# Thicknesses of the inner layers shrink into the foveal pit; the outer nuclear layer thickens there.
LAYERS: tuple[tuple[str, float, float], ...] = (
    ("rnfl", 0.75, 6.0),
    ("gcl", 0.3, 9.0),
    ("ipl", 0.42, 7.0),
    ("inl", 0.12, 7.0),
    ("opl", 0.38, 4.0),
    ("onl", 0.07, 15.0),
    ("elm", 0.28, 1.5),
    ("myoid", 0.1, 4.0),
    ("ellipsoid", 0.8, 3.0),
    ("outer_segments", 0.15, 4.0),
    ("interdigitation", 0.5, 2.0),
    ("rpe", 1.0, 5.0),
)
NAMES = tuple(name for name, _, _ in LAYERS)
INNER = ("rnfl", "gcl", "ipl", "inl", "opl")
VITREOUS, CHOROID, DRUSE, FLUID = 0.004, 0.5, 0.3, 0.008


@dataclass(frozen=True)
class OctDemoSpec:
    """Image counts per BMAD split and the B-scan size in pixels."""

    train_normal: int = 120
    valid_normal: int = 16
    valid_abnormal: int = 16
    test_normal: int = 40
    test_abnormal: int = 40
    height: int = 256
    width: int = 384

    def __post_init__(self) -> None:
        owner = "demo_data.oct"
        for name in ("train_normal", "valid_normal", "valid_abnormal", "test_normal", "test_abnormal"):
            require_int(owner, name, getattr(self, name), 0)
        require_int(owner, "height", self.height, 64, 2048)
        require_int(owner, "width", self.width, 64, 2048)

    def folders(self) -> tuple[tuple[str, str, int], ...]:
        """(split, category, count) for every BMAD folder, normal first."""
        return (
            ("train", "good", self.train_normal),
            ("valid", "good", self.valid_normal),
            ("valid", "Ungood", self.valid_abnormal),
            ("test", "good", self.test_normal),
            ("test", "Ungood", self.test_abnormal),
        )


def _bump(x: np.ndarray, centre: float, half_width: float, power: float = 1.0) -> np.ndarray:
    """A smooth dome, 1 at ``centre`` and 0 beyond ``half_width``: (1 - u^2)^power."""
    u = np.clip((x - centre) / half_width, -1.0, 1.0)
    return (1.0 - u * u) ** power


def _fluid(
    rng: np.random.Generator, x: np.ndarray, fovea: float, sx: float, sy: float
) -> tuple[list[tuple[float, float, float, float]], np.ndarray]:
    """Intraretinal cysts (ellipses: centre x, lift above the middle of the outer nuclear layer, half
    sizes) and a subretinal detachment height profile (0 where there is none)."""
    cysts: list[tuple[float, float, float, float]] = []
    detachment = np.zeros_like(x)
    style = rng.choice(["cysts", "detachment", "both"], p=[0.45, 0.25, 0.3])
    if style != "detachment":
        for _ in range(rng.integers(1, 5)):
            half_w, half_h = rng.uniform(16, 40) * sx, rng.uniform(8, 18) * sy
            cysts.append((fovea + rng.uniform(-70, 70) * sx, rng.uniform(-4, 8) * sy, half_w, half_h))
    if style != "cysts":
        centre = fovea + rng.uniform(-50, 50) * sx
        detachment = rng.uniform(20, 40) * sy * _bump(x, centre, rng.uniform(40, 90) * sx, 1.5)
    return cysts, detachment


def _drusen(rng: np.random.Generator, x: np.ndarray, fovea: float, sx: float, sy: float) -> np.ndarray:
    """RPE elevation profile: one to four domes, sometimes confluent."""
    elevation = np.zeros_like(x)
    for _ in range(rng.integers(1, 5)):
        centre = fovea + rng.uniform(-110, 110) * sx
        dome = rng.uniform(12, 28) * sy * _bump(x, centre, rng.uniform(20, 48) * sx, 0.8)
        elevation = np.maximum(elevation, dome)
    return elevation


@dataclass(frozen=True)
class _Eye:
    """Per-scan geometry: Bruch's membrane row per column, foveal pit profile, layer thickness wobble."""

    fovea: float
    bruch: np.ndarray
    pit: np.ndarray
    wave: np.ndarray
    nasal: float


def _eye(rng: np.random.Generator, x: np.ndarray, height: int, width: int, sx: float, sy: float) -> _Eye:
    fovea = rng.uniform(0.35, 0.65) * width
    dx = x - fovea
    # Bruch's membrane: tilted, bowed, slowly undulating
    bruch = (
        rng.uniform(0.48, 0.64) * height
        + rng.uniform(-0.1, 0.1) * sy / sx * dx
        - rng.uniform(-0.2, 0.8) * 1e-4 * sy / sx**2 * dx * dx
        + 2.0 * sy * smooth_noise(rng, (width,), 90 * sx)
    )
    pit = np.exp(-0.5 * (dx / (rng.uniform(20, 34) * sx)) ** 2) * rng.uniform(0.8, 0.97)
    wave = 1.0 + 0.08 * smooth_noise(rng, (width,), 60 * sx)
    return _Eye(fovea, bruch, pit, wave, float(rng.choice([-1.0, 1.0])))


def _retina(
    rng: np.random.Generator,
    eye: _Eye,
    x: np.ndarray,
    y: np.ndarray,
    sx: float,
    sy: float,
    swelling: np.ndarray,
    detachment: np.ndarray,
    elevation: np.ndarray,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Layered reflectivity above Bruch's membrane and the top edge (row per column) of every layer.

    Layers are stacked upwards from the (possibly drusen-elevated) RPE; intraretinal swelling thickens
    the outer nuclear layer and a detachment stretches the outer segments, so everything above moves up.
    """
    dx = x - eye.fovea
    levels = [VITREOUS]
    tops: list[np.ndarray] = []
    edge = eye.bruch - elevation
    for name, reflect, thick in reversed(LAYERS):
        t = thick * sy * eye.wave * rng.uniform(0.85, 1.15)
        if name == "rnfl":  # thicker on the nasal side (towards the optic disc)
            t = t * (1.0 + 0.6 * np.tanh(eye.nasal * dx / (60 * sx)))
        if name in INNER:
            t = t * (1.0 - eye.pit)
        elif name == "onl":
            t = t * (1.0 + 0.5 * eye.pit) + swelling
        elif name == "outer_segments":
            t = t + detachment
        edge = edge - t
        tops.append(edge)
        levels.append(reflect * rng.uniform(0.9, 1.1))
    tops, levels = tops[::-1], levels[:1] + levels[1:][::-1]
    # soft (sub-pixel) edges, top layer first
    image = np.full((y.shape[0], x.shape[0]), VITREOUS)
    for top, level_above, level in zip(tops, levels[:-1], levels[1:], strict=True):
        image += (level - level_above) / (1.0 + np.exp(-(y - top) / 0.6))
    return image, dict(zip(NAMES, tops, strict=True))


def _choroid(rng: np.random.Generator, reflect: np.ndarray, below: np.ndarray, sy: float) -> np.ndarray:
    """Replace everything below Bruch's membrane by a vascular choroid fading into the dark sclera."""
    height, width = reflect.shape
    level = CHOROID * rng.uniform(0.85, 1.15)
    vessels = ndimage.zoom(
        smooth_noise(rng, (height, width // 2), 7 * sy), (1, width / (width // 2)), order=1
    )[:, :width]  # vessel lumens look stretched along the scan
    choroid = level * np.exp(-np.maximum(below, 0) / (rng.uniform(12, 20) * sy))
    choroid = choroid * np.clip(0.7 + 0.3 * vessels, 0.3, 1.2)
    under = 1.0 / (1.0 + np.exp(-below / 0.8))
    return reflect * (1.0 - under) + choroid * under


def _fill_fluid(
    rng: np.random.Generator,
    reflect: np.ndarray,
    edges: dict[str, np.ndarray],
    cysts: list[tuple[float, float, float, float]],
    detachment: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    sy: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Darken the cysts and the subretinal gap; return (reflectivity, fluid mask)."""
    # the detached photoreceptor outer segments hang above a dark gap over the interdigitation zone
    attached = edges["interdigitation"]
    gap = (detachment > 1.5 * sy) & (y > attached - detachment) & (y < attached)
    pocket = np.zeros(reflect.shape)
    for cx, lift, hw, hh in cysts:
        cy = edges["onl"] + 0.5 * (edges["elm"] - edges["onl"]) - lift
        u = ((x - cx) / hw) ** 2 + ((y - cy) / hh) ** 2
        pocket = np.maximum(pocket, 1.0 / (1.0 + np.exp((np.sqrt(u) - 1.0) / 0.06)))
    pocket = np.maximum(pocket, gap)
    reflect = reflect * (1.0 - pocket) + FLUID * pocket
    # elongated, shed outer segments line the roof of a detachment with granular reflective material
    shed = gap & (y < attached - detachment + rng.uniform(0.15, 0.3) * detachment)
    granular = 0.45 * np.clip(1.0 + 0.5 * smooth_noise(rng, reflect.shape, 2), 0.2, 2.0)
    return np.where(shed, granular, reflect), pocket > 0.5


def render_oct_scan(
    height: int, width: int, rng: np.random.Generator, kind: str = "normal"
) -> tuple[np.ndarray, np.ndarray]:
    """One B-scan: (uint8 image (H, W), bool mask (H, W)); ``kind`` is "normal", "fluid" or "drusen".

    Geometry and acquisition come from their own generators and the abnormality from a third, so a
    normal and an abnormal scan share exactly the same distribution of everything else.
    """
    if kind not in ("normal", *ABNORMAL_KINDS):
        raise ValueError(f"unknown OCT scan kind {kind!r}; use 'normal', 'fluid' or 'drusen'")
    sy, sx = height / REFERENCE_SIZE[0], width / REFERENCE_SIZE[1]
    anatomy_rng, lesion_rng, noise_rng = rng.spawn(3)
    x = np.arange(width, dtype=np.float64)
    y = np.arange(height, dtype=np.float64)[:, None]
    eye = _eye(anatomy_rng, x, height, width, sx, sy)

    cysts: list[tuple[float, float, float, float]] = []
    detachment = elevation = np.zeros(width)
    if kind == "fluid":
        cysts, detachment = _fluid(lesion_rng, x, eye.fovea, sx, sy)
    elif kind == "drusen":
        elevation = _drusen(lesion_rng, x, eye.fovea, sx, sy)
    # intraretinal cysts thicken the retina above them
    swelling = sum((1.6 * hh * _bump(x, cx, 1.2 * hw) for cx, _, hw, hh in cysts), np.zeros(width))
    reflect, edges = _retina(anatomy_rng, eye, x, y, sx, sy, swelling, detachment, elevation)
    reflect = _choroid(anatomy_rng, reflect, y - eye.bruch, sy)

    mask = np.zeros((height, width), dtype=bool)
    if kind == "drusen":
        # moderately reflective material between Bruch's membrane and the elevated RPE
        material = (y > eye.bruch - elevation) & (y < eye.bruch)
        texture = smooth_noise(lesion_rng, (height, width), 3)
        reflect = np.where(material, DRUSE * np.clip(1.0 + 0.25 * texture, 0.3, 1.7), reflect)
        mask = (elevation > 1.5 * sy) & (y < eye.bruch) & (y > eye.bruch - elevation - 3.0 * sy)
    elif kind == "fluid":
        reflect, mask = _fill_fluid(lesion_rng, reflect, edges, cysts, detachment, x, y, sy)
    return _acquire(reflect, noise_rng, sx, sy), mask


def _acquire(reflect: np.ndarray, rng: np.random.Generator, sx: float, sy: float) -> np.ndarray:
    """Speckle, noise floor, vignetting, log compression and blur: the same for every scan."""
    height, width = reflect.shape
    looks = rng.uniform(0.7, 1.1)
    speckle = rng.gamma(looks, 1.0 / looks, reflect.shape)
    speckle = ndimage.gaussian_filter(speckle, (0.6 * sy, 1.0 * sx))  # grains a little wider than tall
    speckle /= speckle.mean()
    floor = 0.012 * rng.rayleigh(1.0, reflect.shape)
    u = np.linspace(-1.0, 1.0, width)
    v = np.linspace(0.0, 1.0, height)[:, None]
    vignette = (1.0 - rng.uniform(0.15, 0.45) * u**2) * (1.0 - rng.uniform(0.0, 0.3) * v**2)
    gain = rng.uniform(0.8, 1.2)
    linear = reflect * speckle * vignette * gain + floor
    # log display with the black level set a little above the noise floor, as scanners do
    black = rng.uniform(0.018, 0.03)
    shown = np.log(np.maximum(linear, 1e-6) / black) / np.log(rng.uniform(1.0, 1.3) / black)
    shown = ndimage.gaussian_filter(np.maximum(shown, 0.0), rng.uniform(0.5, 0.9) * min(sx, sy))
    return to_uint8(shown)


def generate_oct(out_dir: Path, spec: OctDemoSpec, seed: int) -> dict:
    """Write ``out_dir/oct/<split>/<category>/img`` (+ ``label`` for Ungood); the folder is replaced."""
    root = reset_dir(Path(out_dir) / "oct")
    summary: dict[str, dict[str, int]] = {}
    kinds = {kind: 0 for kind in ABNORMAL_KINDS}
    for split, category, count in spec.folders():
        img_dir = root / split / category / "img"
        img_dir.mkdir(parents=True)
        label_dir = root / split / category / "label"
        if category == "Ungood":
            label_dir.mkdir()
        for index in range(count):
            kind = "normal" if category == "good" else ABNORMAL_KINDS[index % len(ABNORMAL_KINDS)]
            rng = case_rng(seed, f"oct/{split}/{category}", index)
            image, mask = render_oct_scan(spec.height, spec.width, rng, kind)
            name = f"{kind}_{index:04d}.png"
            atomic.write_bytes(img_dir / name, encode_image(image, "PNG"))
            if category == "Ungood":
                kinds[kind] += 1
                atomic.write_bytes(label_dir / name, encode_image(mask.astype(np.uint8) * 255, "PNG"))
        summary.setdefault(split, {})[category] = count
    return {**summary, "abnormal_kinds": kinds}
