"""The `localize` stage: how well each map shows where the lesion is, on the test slices with masks.

For one dataset, on the same test images: MKD's map from each Captum attribution (Salehi et al., CVPR
2021, Sec. 3.3 and Table 8), MKD's own feature-discrepancy map, and the STPM and RD4AD maps. Every map is
normalised per study (`kdmed.rules.normalize_per_study`), with the floor set by the same map type on a few
validation normals (never test images), then scored with pixel AUROC and
AUPRO (the evaluate stage's `pixel_metrics`, with patient-bootstrap intervals when there are enough
patients), the lesion mass ratio (share of the map's mass inside the mask divided by the mask's share of
the image; 1 = no better than uniform) and the milliseconds per slice it took on this machine. Two
other scalings are scored beside it: `*_raw`, one scale for the whole test set as the evaluate stage
scores maps, and `*_study_peak`, per study without the floor, which stretches a normal study's faint maps
to the lesion studies' brightness (the columns show what that costs).
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import torch

from kdmed import atomic
from kdmed.checkpoint import load_checkpoint
from kdmed.config import Params
from kdmed.config_schema import to_plain
from kdmed.data.slices import SliceSet, load_split
from kdmed.errors import ConfigError
from kdmed.inference import batched, predict_images
from kdmed.metrics.pixel import aupro, pixel_auroc
from kdmed.metrics.reported import pixel_metrics, rounded
from kdmed.paths import checkpoint_path, localize_dir
from kdmed.rules import normal_peak, normalize_per_study
from kdmed.runtime import amp_dtype, configure_threads, resolve_device


def select_images(test: SliceSet, max_images: int, seed: int) -> np.ndarray:
    """Indices of the evaluated images: all usable ones (normals and anomalies with a mask), or a seeded
    subset of at most `max_images`, half anomalies with a lesion in the mask and half normals."""
    lesion = np.flatnonzero((test.labels == 1) & test.has_mask & test.masks.reshape(len(test), -1).any(1))
    normal = np.flatnonzero(test.labels == 0)
    if lesion.size == 0:
        raise ConfigError(
            "localize: the test split has no anomaly with a lesion mask, so maps cannot be scored; remove "
            "this dataset from localize.datasets."
        )
    if max_images == 0 or lesion.size + normal.size <= max_images:
        return np.sort(np.concatenate([lesion, normal]))
    rng = np.random.default_rng(seed)
    take_normal = min(normal.size, max_images // 2)
    take_lesion = min(lesion.size, max_images - take_normal)
    chosen = [rng.choice(lesion, take_lesion, replace=False), rng.choice(normal, take_normal, replace=False)]
    return np.sort(np.concatenate(chosen))


def lesion_mass_ratio(maps: np.ndarray, masks: np.ndarray) -> float | None:
    """Mean over images with a lesion of (map mass inside the mask / total mass) / (mask area / image
    area): 1 means the map is no more concentrated on the lesion than a uniform map."""
    ratios = []
    for heat, mask in zip(maps, masks, strict=True):
        inside, total, area = float(heat[mask > 0].sum()), float(heat.sum()), float((mask > 0).mean())
        if area > 0 and total > 0:
            ratios.append(inside / total / area)
    return float(np.mean(ratios)) if ratios else None


def _timed(compute) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    maps = compute()
    return maps, time.perf_counter() - started


def mkd_maps(detector, images: torch.Tensor, method: str, batch_size: int, device) -> np.ndarray:
    """MKD maps of uint8 images (N, C, S, S): an attribution method, or "discrepancy"."""

    def maps(batch: torch.Tensor) -> np.ndarray:
        if method == "discrepancy":
            teacher, student = detector.features(batch)
            return detector.discrepancy_maps(batch, teacher, student).float().cpu().numpy()
        return detector.gradient_maps(batch, method).float().cpu().numpy()

    detector.eval()
    return np.concatenate(batched(maps, images, batch_size, device, grad=method != "discrepancy"))


def reference_normals(params: Params, dataset: str) -> torch.Tensor:
    """A seeded subset of `localize.reference_images` validation normals (never test images): they set
    the brightness floor of the per-study normalisation."""
    count = params.localize.reference_images
    normals = load_split(params.preprocess.out_dir, dataset, "val").normals().images
    if count == 0 or normals.shape[0] == 0:
        return normals[:0]
    rng = np.random.default_rng(params.localize.seed)
    chosen = np.sort(rng.choice(normals.shape[0], min(count, normals.shape[0]), replace=False))
    return normals[torch.from_numpy(chosen)]


def all_maps(params: Params, dataset: str, images: torch.Tensor, device) -> tuple[dict, dict, dict, dict]:
    """Raw maps of every compared map type on uint8 `images`, seconds per slice for each, the MKD
    checkpoint's attribution settings, and the calibration of the checkpoint that serves each map type
    (its stored normal level floors that map; map types no checkpoint serves get None)."""
    config = params.localize
    mkd = load_checkpoint(checkpoint_path(params, dataset, "mkd"), device)
    maps, seconds = {}, {}
    mkd_config = mkd.detector.config
    if config.samples:  # this comparison's sample count, not the checkpoint's (which serving keeps)
        attribution = replace(
            mkd_config.attribution, smoothgrad_samples=config.samples, ig_steps=config.samples
        )
        mkd_config = mkd.detector.config = replace(mkd_config, attribution=attribution)
    served = "discrepancy" if mkd_config.map != "gradient" else mkd_config.attribution.method
    calibrations = {f"mkd_{served}": mkd.serving.calibration}
    mkd_maps(mkd.detector, images[:1], "saliency", 1, device)  # warm-up, untimed
    for method in (*config.attributions, "discrepancy"):
        name = f"mkd_{method}"
        with torch.random.fork_rng(devices=[]):  # SmoothGrad's noise: the same maps on every run
            torch.manual_seed(config.seed)
            maps[name], seconds[name] = _timed(
                lambda m=method: mkd_maps(mkd.detector, images, m, config.batch_size, device)
            )
    amp = amp_dtype(device, params.common.amp)
    for other in config.compare:
        checkpoint = load_checkpoint(checkpoint_path(params, dataset, other), device)
        calibrations[other] = checkpoint.serving.calibration
        predict_images(checkpoint.detector, images[:1], 1, amp)  # warm-up, untimed
        maps[other], seconds[other] = _timed(
            lambda c=checkpoint: predict_images(c.detector, images, config.batch_size, amp).maps
        )
    per_slice = {name: value / max(images.shape[0], 1) for name, value in seconds.items()}
    calibrations = {name: calibrations.get(name) for name in maps}
    calibrations["_quantile"] = mkd.serving.calibration.map_floor_quantile
    return maps, per_slice, to_plain(mkd_config.attribution), calibrations


def localize_stage(params: Params, dataset: str) -> dict:
    configure_threads(params.common.num_threads)
    device = resolve_device(params.common.device)
    config = params.localize
    full = load_split(params.preprocess.out_dir, dataset, "test")
    test = full.subset(select_images(full, config.max_images, config.seed))
    reference = reference_normals(params, dataset)
    images = torch.cat([test.images, reference])
    maps, per_slice, settings, calibrations = all_maps(params, dataset, images, device)
    quantile = calibrations.pop("_quantile")
    rows, shown_maps, floors = {}, {}, {}
    for name, both in maps.items():
        raw, normal = both[: len(test)], both[len(test) :]
        stored = calibrations[name]
        floor = stored.map_floor if stored is not None else normal_peak(normal, quantile)
        floors[name] = {"floor": floor, "from": "checkpoint" if stored is not None else "reference normals"}
        shown = shown_maps[name] = normalize_per_study(raw, test.patients, floor)
        unfloored = normalize_per_study(raw, test.patients, 0.0)  # the named `study_peak` option
        rows[name] = {
            **pixel_metrics(test, shown),
            "pixel_auroc_study_peak": pixel_auroc(unfloored, test.masks),
            "aupro_0.3_study_peak": aupro(unfloored, test.masks, fpr_limit=0.3),
            "pixel_auroc_raw": pixel_auroc(raw, test.masks),
            "aupro_0.3_raw": aupro(raw, test.masks, fpr_limit=0.3),
            "lesion_mass_ratio": lesion_mass_ratio(shown, test.masks),
            "ms_per_slice": 1000.0 * per_slice[name],
        }
    metrics = {
        "dataset": dataset,
        "device": str(device),
        "images": int(len(test)),
        "lesion_images": int(((test.labels == 1) & test.masks.reshape(len(test), -1).any(1)).sum()),
        "studies": int(len(set(test.patients.tolist()))),
        "normalisation": (
            "per study (kdmed.rules.heat_scale): each map divided by max(the maximum over its study's "
            "evaluated slices, the normal map level): the level stored in the checkpoint that serves the "
            f"map, else the {quantile} quantile of the map maxima of {len(reference)} validation normals"
        ),
        "floors": floors,
        "reference_normals": int(len(reference)),
        "settings": {**settings, "batch_size": config.batch_size},
        "maps": rows,
    }
    out_dir = localize_dir(params, dataset)
    atomic.write_json(out_dir / "metrics.json", rounded(metrics))
    from kdmed.localize.panel import save_comparison_panel  # matplotlib only when drawing

    save_comparison_panel(
        out_dir / "panel.png",
        test,
        shown_maps,
        config.panel_images,
        title=f"{dataset}: where each map points",
    )
    return metrics
