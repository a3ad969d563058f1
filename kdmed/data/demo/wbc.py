"""Synthetic blood-smear crops of one white blood cell, in the layout of the WBC dataset (Zheng et al.).

``wbc/images/NNN.bmp`` (24-bit RGB), ``wbc/masks/NNN.png`` (0 background, 128 cytoplasm, 255 nucleus),
``wbc/anomaly_masks/NNN.png`` (0/255, the atypical region) and ``wbc/labels.csv`` (``image ID,class label``;
1 = normal neutrophil-like cell, 2 = atypical cell).

Images are composed in optical density (Beer-Lambert: stains absorb, densities add where cells overlap),
which gives overlapping red cells, their pale centres and the cell colours for free: pinkish plasma, red
blood cells, a white cell with pale lilac granular cytoplasm and a purple nucleus of 2-5 lobes. Atypical
cells have a blast-like nucleus (large, round or kidney-shaped, fine chromatin, pale nucleoli, scant blue
cytoplasm), a hyperchromatic hypersegmented, ring-shaped or flower-like nucleus, or inclusions (Auer rods
among azurophilic granules, giant violet bodies, toxic granulation with vacuoles, or a foamy cytoplasm).
The anomaly mask marks the atypical nucleus or the inclusions.
"""

from __future__ import annotations

import math
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
    spread_flags,
    to_uint8,
)
from kdmed.errors import ConfigError

NORMAL_CLASS, ATYPICAL_CLASS = 1, 2
CYTOPLASM_VALUE, NUCLEUS_VALUE = 128, 255
ABNORMAL_KINDS = ("blast", "inclusions", "bizarre")
KIND_CYCLE = ("blast", "inclusions", "bizarre", "blast", "inclusions")  # atypical cells: 40 / 40 / 20 %

# optical densities (R, G, B) of the stains at full strength
PLASMA = np.array([0.05, 0.12, 0.15])
RED_CELL = np.array([0.07, 0.45, 0.38])
CYTOPLASM = np.array([0.10, 0.17, 0.07])
GRANULES = np.array([0.12, 0.22, 0.05])
BLAST_CYTOPLASM = np.array([0.42, 0.30, 0.10])
NUCLEUS = np.array([0.95, 1.55, 0.55])
DARK_BODY = np.array([0.55, 1.8, 0.5])  # magenta-violet, redder than chromatin
AUER_ROD = np.array([0.6, 1.7, 0.75])
TOXIC_GRANULES = np.array([0.9, 1.5, 0.4])


@dataclass(frozen=True)
class WbcDemoSpec:
    """How many normal and atypical cells to draw, and the square crop size in pixels."""

    normal: int = 160
    abnormal: int = 60
    size: int = 120

    def __post_init__(self) -> None:
        owner = "demo_data.wbc"
        require_int(owner, "normal", self.normal, 0)
        require_int(owner, "abnormal", self.abnormal, 0)
        if self.normal + self.abnormal == 0:
            raise ConfigError(
                f"params: '{owner}.normal' and '{owner}.abnormal' are both 0; ask for at least one image."
            )
        require_int(owner, "size", self.size, 48, 1024)


def _ellipse(
    yy: np.ndarray,
    xx: np.ndarray,
    cy: float,
    cx: float,
    ry: float,
    rx: float,
    angle: float = 0.0,
    soft: float = 0.7,
) -> np.ndarray:
    """Soft-edged filled ellipse in [0, 1]; ``soft`` is the edge width in pixels."""
    c, s = math.cos(angle), math.sin(angle)
    u, v = (xx - cx) * c + (yy - cy) * s, -(xx - cx) * s + (yy - cy) * c
    dist = np.sqrt((u / rx) ** 2 + (v / ry) ** 2)
    return np.clip((1.0 - dist) * min(rx, ry) / soft + 0.5, 0.0, 1.0)


def _capsule(yy: np.ndarray, xx: np.ndarray, p0: np.ndarray, p1: np.ndarray, width: float) -> np.ndarray:
    """Soft line segment of the given width (pixels) from ``p0`` to ``p1`` (y, x)."""
    d = p1 - p0
    t = np.clip(((yy - p0[0]) * d[0] + (xx - p0[1]) * d[1]) / max(float(d @ d), 1e-6), 0.0, 1.0)
    dist = np.hypot(yy - p0[0] - t * d[0], xx - p0[1] - t * d[1])
    return np.clip((0.5 * width - dist) / 0.7 + 0.5, 0.0, 1.0)


def _red_cells(
    rng: np.random.Generator,
    yy: np.ndarray,
    xx: np.ndarray,
    centre: np.ndarray,
    cell_radius: float,
    size: int,
) -> np.ndarray:
    """Summed thickness of biconcave red cells (pale centres), pushed out of the white cell's spot."""
    thickness = np.zeros_like(yy)
    radius = 0.115 * size * rng.uniform(0.92, 1.08)
    placed = 0
    for _ in range(200):
        if placed >= rng.integers(9, 19):
            break
        c = rng.uniform(-0.1 * size, 1.1 * size, 2)
        if np.hypot(*(c - centre)) < cell_radius + 0.45 * radius:
            continue
        r = radius * rng.uniform(0.9, 1.1)
        body = _ellipse(yy, xx, c[0], c[1], r * rng.uniform(0.9, 1.0), r, rng.uniform(0, math.pi), 1.0)
        pallor = np.exp(-((((yy - c[0]) ** 2 + (xx - c[1]) ** 2) / (0.5 * r) ** 2) ** 2))
        thickness += body * (1.0 - rng.uniform(0.6, 0.8) * pallor)
        placed += 1
    return thickness


def _lobed_nucleus(
    rng: np.random.Generator,
    yy: np.ndarray,
    xx: np.ndarray,
    centre: np.ndarray,
    cell_radius: float,
    lobes: int,
    spread: float,
    lobe_size: float,
) -> np.ndarray:
    """Lobes strung along an arc and joined by thin chromatin strands (a segmented nucleus)."""
    arc_radius = cell_radius * rng.uniform(0.38, 0.5)
    start = rng.uniform(0, 2 * math.pi)
    span = min(spread * (lobes - 1), 2 * math.pi * (lobes - 1) / lobes)
    nucleus = np.zeros_like(yy)
    previous = None
    for k in range(lobes):
        theta = start + (span * k / max(lobes - 1, 1)) * rng.uniform(0.9, 1.1)
        p = centre + arc_radius * np.array([math.sin(theta), math.cos(theta)])
        p = p + rng.normal(0, 0.04, 2) * cell_radius
        lobe = cell_radius * lobe_size
        ry, rx = lobe * rng.uniform(0.8, 1.0), lobe * rng.uniform(1.0, 1.3)
        nucleus = np.maximum(nucleus, _ellipse(yy, xx, p[0], p[1], ry, rx, theta + rng.normal(0, 0.3)))
        if previous is not None:
            nucleus = np.maximum(nucleus, _capsule(yy, xx, previous, p, rng.uniform(1.4, 2.4)))
        previous = p
    return nucleus


def _blast_nucleus(
    rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, centre: np.ndarray, cell_radius: float
) -> np.ndarray:
    """A large round, oval or kidney-shaped nucleus filling most of the cell."""
    offset = rng.normal(0, 0.06, 2) * cell_radius
    r = cell_radius * rng.uniform(0.66, 0.8)
    angle = rng.uniform(0, 2 * math.pi)
    nucleus = _ellipse(yy, xx, *(centre + offset), r * rng.uniform(0.82, 1.0), r, angle)
    if rng.random() < 0.4:  # kidney: a notch bitten out of one side
        notch = centre + offset + 1.05 * r * np.array([math.sin(angle), math.cos(angle)])
        nucleus = nucleus * (1.0 - _ellipse(yy, xx, *notch, 0.45 * r, 0.45 * r))
    return nucleus


def _inclusions(
    rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, cell_radius: float, room: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(optical density (H, W, 3) of stained inclusions, vacuole map), both inside ``room`` (the cytoplasm
    away from the nucleus): Auer rods, dark violet bodies, toxic granulation with vacuoles, or a foamy
    cytoplasm full of vacuoles."""
    od, vacuoles = np.zeros((*yy.shape, 3)), np.zeros_like(yy)
    style = rng.choice(["rods", "bodies", "toxic", "vacuoles"], p=[0.25, 0.25, 0.25, 0.25])
    candidates = np.argwhere(room > 0.5)
    if len(candidates) == 0:
        return od, vacuoles

    def spot() -> np.ndarray:
        return candidates[rng.integers(len(candidates))].astype(float)

    def add_vacuoles(count: int) -> np.ndarray:
        found = np.zeros_like(yy)
        for _ in range(count):
            r = cell_radius * rng.uniform(0.1, 0.2)
            found = np.maximum(found, _ellipse(yy, xx, *spot(), r, r * rng.uniform(0.85, 1.15)))
        return found * room

    if style == "rods":  # Auer rods among coarse azurophilic (magenta) granules
        rods = np.zeros_like(yy)
        for _ in range(rng.integers(5, 10)):
            p, angle = spot(), rng.uniform(0, math.pi)
            half = 0.5 * cell_radius * rng.uniform(0.6, 1.0) * np.array([math.sin(angle), math.cos(angle)])
            rods = np.maximum(rods, _capsule(yy, xx, p - half, p + half, rng.uniform(3.0, 4.0)))
        granules = np.clip((smooth_noise(rng, yy.shape, 1.2) - 0.8) / 0.3, 0.0, 1.0)
        od = (rods * room)[..., None] * AUER_ROD + (granules * room)[..., None] * DARK_BODY * 0.7
    elif style == "bodies":  # giant inclusion granules
        bodies = np.zeros_like(yy)
        for _ in range(rng.integers(8, 15)):
            r = cell_radius * rng.uniform(0.12, 0.2)
            bodies = np.maximum(bodies, _ellipse(yy, xx, *spot(), r, r * rng.uniform(0.8, 1.2)))
        od = (bodies * room)[..., None] * DARK_BODY
    elif style == "toxic":  # dense coarse dark granules all over the cytoplasm, and vacuoles
        granules = np.clip((smooth_noise(rng, yy.shape, 1.3) - 0.4) / 0.3, 0.0, 1.0)
        od = (granules * room)[..., None] * TOXIC_GRANULES
        vacuoles = add_vacuoles(int(rng.integers(4, 9)))
    else:  # foamy cytoplasm
        vacuoles = add_vacuoles(int(rng.integers(14, 25)))
    return od, vacuoles


def _bizarre_nucleus(
    rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, centre: np.ndarray, cell_radius: float
) -> np.ndarray:
    """Hypersegmented (8-10 lobes in a ring), ring-shaped, or flower-like (petals round a dense core)."""
    style = rng.choice(["hypersegmented", "ring", "flower"])
    if style == "hypersegmented":
        return _lobed_nucleus(
            rng,
            yy,
            xx,
            centre,
            cell_radius,
            int(rng.integers(8, 11)),
            rng.uniform(0.8, 1.0),
            rng.uniform(0.19, 0.23),
        )
    angle = rng.uniform(0, math.pi)
    if style == "ring":
        outer = cell_radius * rng.uniform(0.5, 0.62)
        inner = outer - cell_radius * rng.uniform(0.16, 0.24)
        squash = rng.uniform(0.8, 1.0)
        return _ellipse(yy, xx, *centre, outer * squash, outer, angle) * (
            1.0 - _ellipse(yy, xx, *centre, inner * squash, inner, angle)
        )
    nucleus = _ellipse(yy, xx, *centre, *(cell_radius * rng.uniform(0.26, 0.34, 2)))
    petals = int(rng.integers(5, 8))
    for k in range(petals):
        theta = angle + 2 * math.pi * k / petals + rng.normal(0, 0.15)
        p = centre + cell_radius * rng.uniform(0.38, 0.48) * np.array([math.sin(theta), math.cos(theta)])
        size = cell_radius * rng.uniform(0.17, 0.24)
        nucleus = np.maximum(nucleus, _ellipse(yy, xx, *p, size * 0.8, size * 1.2, theta))
    return nucleus


def _nucleus(
    kind: str,
    rng: np.random.Generator,
    yy: np.ndarray,
    xx: np.ndarray,
    centre: np.ndarray,
    cell_radius: float,
) -> np.ndarray:
    if kind == "blast":
        return _blast_nucleus(rng, yy, xx, centre, cell_radius)
    if kind == "bizarre":
        return _bizarre_nucleus(rng, yy, xx, centre, cell_radius)
    lobes = int(rng.choice([2, 3, 4, 5], p=[0.2, 0.4, 0.3, 0.1]))
    spread, lobe_size = rng.uniform(0.7, 1.1), rng.uniform(0.22, 0.28)
    return _lobed_nucleus(rng, yy, xx, centre, cell_radius, lobes, spread, lobe_size)


def _optical_density(
    kind: str,
    rng: np.random.Generator,
    lesion_rng: np.random.Generator,
    grid: tuple,
    centre: np.ndarray,
    cell_radius: float,
    layers: dict[str, np.ndarray],
) -> np.ndarray:
    """Sum the stains' optical densities (H, W, 3); stain strength and hue vary from slide to slide."""
    yy, xx = grid
    strength = rng.uniform(0.85, 1.15)

    def stain(od: np.ndarray) -> np.ndarray:
        return od * strength * rng.normal(1.0, 0.05, 3)

    if kind == "blast":  # basophilic cytoplasm, fine pale chromatin with nucleoli
        cyto_od = stain(BLAST_CYTOPLASM)
        nucleoli = sum(
            (
                _ellipse(
                    yy,
                    xx,
                    *(centre + lesion_rng.normal(0, 0.25, 2) * cell_radius),
                    *(cell_radius * lesion_rng.uniform(0.08, 0.13, 2)),
                )
                for _ in range(lesion_rng.integers(1, 4))
            ),
            np.zeros_like(yy),
        )
        texture = 1.0 + 0.08 * layers["chromatin"] - 0.5 * np.clip(nucleoli, 0, 1)
        nucleus_od = stain(NUCLEUS * 0.85)
    elif kind == "bizarre":  # hyperchromatic: far darker chromatin than any normal cell
        cyto_od, nucleus_od = stain(CYTOPLASM), stain(NUCLEUS * lesion_rng.uniform(1.4, 1.7))
        texture = 1.0 + 0.15 * layers["chromatin"]
    else:  # clumped chromatin
        cyto_od, nucleus_od = stain(CYTOPLASM), stain(NUCLEUS)
        texture = 1.0 + 0.25 * layers["chromatin"]
    cytoplasm = (layers["cell"] * (1.0 - 0.85 * layers["vacuoles"]))[..., None] * (
        cyto_od + layers["granules"][..., None] * stain(GRANULES)
    )
    return (
        stain(PLASMA)
        + layers["red"][..., None] * stain(RED_CELL)
        + cytoplasm
        + (layers["nucleus"] * texture)[..., None] * nucleus_od
        + layers["inclusions"]
    )


def _microscope(rng: np.random.Generator, noise_rng: np.random.Generator, od: np.ndarray) -> np.ndarray:
    """Slightly tinted, vignetted illumination through the stains, optical blur and sensor noise."""
    size = od.shape[0]
    yy, xx = np.mgrid[0:size, 0:size]
    off_axis = np.hypot(yy - size / 2, xx - size / 2) / (size / 2)
    vignette = 1.0 - rng.uniform(0.0, 0.12) * off_axis**2
    light = rng.uniform(0.93, 1.0) * rng.uniform(0.96, 1.0, 3)
    rgb = light * vignette[..., None] * np.exp(-od)
    rgb = ndimage.gaussian_filter(rgb, (*(2 * [noise_rng.uniform(0.5, 0.9)]), 0))
    return rgb + noise_rng.normal(0, noise_rng.uniform(0.005, 0.012), rgb.shape)


def render_wbc_cell(
    size: int, rng: np.random.Generator, kind: str = "normal"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One crop: (RGB uint8 (S, S, 3), cell mask uint8 (0/128/255), anomaly mask bool).

    ``kind`` is "normal", "blast", "bizarre" or "inclusions"; the anomaly mask is empty only for "normal".
    Background, cell, stain and microscope draw from generators of their own and the atypia from another,
    so an atypical crop is its normal twin with only the cell changed.
    """
    if kind not in ("normal", *ABNORMAL_KINDS):
        raise ValueError(f"unknown WBC kind {kind!r}; use 'normal', 'blast', 'bizarre' or 'inclusions'")
    anatomy_rng, nucleus_rng, lesion_rng, noise_rng = rng.spawn(4)
    yy, xx = (g.astype(np.float64) for g in np.mgrid[0:size, 0:size])
    centre = size / 2 + anatomy_rng.normal(0, 0.03 * size, 2)
    cell_radius = base_radius = 0.2 * size * anatomy_rng.uniform(0.9, 1.1)
    if kind in ("blast", "bizarre"):  # blasts and hypersegmented cells (macropolycytes) are larger
        cell_radius *= lesion_rng.uniform(1.05, 1.25)
    theta, r = np.arctan2(yy - centre[0], xx - centre[1]), np.hypot(yy - centre[0], xx - centre[1])
    wobble = sum(
        anatomy_rng.normal(0, 0.02) * np.cos(k * theta + anatomy_rng.uniform(0, 6.3)) for k in range(2, 6)
    )
    outline = cell_radius * (1.0 + wobble)
    layers = {
        "cell": np.clip((outline - r) / 0.8 + 0.5, 0.0, 1.0),
        "red": _red_cells(anatomy_rng, yy, xx, centre, 1.1 * base_radius, size),
        "chromatin": smooth_noise(anatomy_rng, (size, size), 1.8),
        "granules": np.clip(smooth_noise(anatomy_rng, (size, size), 1.2) - 0.3, 0.0, None),
        "vacuoles": np.zeros((size, size)),
        "inclusions": np.zeros((size, size, 3)),
    }
    layers["granules"] *= anatomy_rng.uniform(0.6, 1.2)

    atypical_nucleus = kind in ("blast", "bizarre")
    nucleus = _nucleus(kind, lesion_rng if atypical_nucleus else nucleus_rng, yy, xx, centre, cell_radius)
    layers["nucleus"] = nucleus = nucleus * (layers["cell"] > 0.99)
    anomaly = nucleus > 0.5 if atypical_nucleus else np.zeros((size, size), dtype=bool)
    if kind == "inclusions":
        room = ((outline - r) > 0.1 * cell_radius) & ~ndimage.binary_dilation(nucleus > 0.3, iterations=2)
        layers["inclusions"], layers["vacuoles"] = _inclusions(
            lesion_rng, yy, xx, cell_radius, room.astype(float)
        )
        found = (layers["inclusions"].max(axis=-1) > 0.4) | (layers["vacuoles"] > 0.5)
        anomaly = ndimage.binary_dilation(found) & (layers["cell"] > 0.5)

    od = _optical_density(kind, anatomy_rng, lesion_rng, (yy, xx), centre, cell_radius, layers)
    rgb = _microscope(anatomy_rng, noise_rng, od)
    seg = np.where(nucleus > 0.5, NUCLEUS_VALUE, np.where(layers["cell"] > 0.5, CYTOPLASM_VALUE, 0))
    return to_uint8(rgb), seg.astype(np.uint8), anomaly


def generate_wbc(out_dir: Path, spec: WbcDemoSpec, seed: int) -> dict:
    """Write ``out_dir/wbc/{images,masks,anomaly_masks}`` and ``labels.csv``; the folder is replaced."""
    root = reset_dir(Path(out_dir) / "wbc")
    folders = {name: root / name for name in ("images", "masks", "anomaly_masks")}
    for folder in folders.values():
        folder.mkdir()
    rows = ["image ID,class label"]
    kinds: dict[str, int] = {}
    abnormal_index = 0
    for index, abnormal in enumerate(spread_flags(spec.normal, spec.abnormal), start=1):
        kind = "normal"
        if abnormal:
            kind = KIND_CYCLE[abnormal_index % len(KIND_CYCLE)]
            abnormal_index += 1
            kinds[kind] = kinds.get(kind, 0) + 1
        image, seg, anomaly = render_wbc_cell(spec.size, case_rng(seed, "wbc", index), kind)
        name = f"{index:03d}"
        atomic.write_bytes(folders["images"] / f"{name}.bmp", encode_image(image, "BMP"))
        atomic.write_bytes(folders["masks"] / f"{name}.png", encode_image(seg, "PNG"))
        anomaly_png = encode_image(anomaly.astype(np.uint8) * 255, "PNG")
        atomic.write_bytes(folders["anomaly_masks"] / f"{name}.png", anomaly_png)
        rows.append(f"{index},{ATYPICAL_CLASS if abnormal else NORMAL_CLASS}")
    atomic.write_bytes(root / "labels.csv", ("\n".join(rows) + "\n").encode())
    return {"normal": spec.normal, "abnormal": spec.abnormal, "abnormal_kinds": kinds}
