"""Running a detector: `batched` (the one batching loop), `predict_images` (maps and scores of stored
images: the evaluate, train and localize stages) and `score_study` (a loaded study through the checkpoint's
preprocessing: `kdmed score`, the app and review). Both scoring paths end in `predict_images`."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from kdmed import rules
from kdmed.contract import SCORED, ServingContract
from kdmed.data.arrays import to_model_input
from kdmed.input_profile import study_check
from kdmed.models.base import Detector
from kdmed.ood import OodCheck
from kdmed.runtime import amp_dtype, autocast

Output = TypeVar("Output")


@dataclass(frozen=True)
class Scores:
    maps: np.ndarray  # (N, S, S) float32
    scores: np.ndarray  # (N,) float64


@contextlib.contextmanager
def eval_mode(module: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """The module in eval mode (BatchNorm statistics frozen) for the block, its own mode restored after."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


def batched(
    fn: Callable[[torch.Tensor], Output],
    images: torch.Tensor,
    batch_size: int,
    device: torch.device,
    amp: torch.dtype | None = None,
    *,
    grad: bool = False,
    progress: Callable[[int, int], Any] | None = None,
) -> list[Output]:
    """`fn(batch)` for each run of `batch_size` uint8 or [0, 1] images (N, C, S, S), in order: each batch
    as model input (`to_model_input`) on `device`, under `autocast(device, amp)` and, unless `grad`,
    without autograd. `progress(done, total)` after each batch. The caller chooses the module's mode
    (`eval_mode`)."""
    outputs: list[Output] = []
    total = images.shape[0]
    with torch.set_grad_enabled(grad):
        for start in range(0, total, batch_size):
            batch = to_model_input(images[start : start + batch_size]).to(device, non_blocking=True)
            with autocast(device, amp):
                outputs.append(fn(batch))
            if progress is not None:
                progress(min(start + batch_size, total), total)
    return outputs


def predict_images(
    detector: Detector,
    images: torch.Tensor,
    batch_size: int = 32,
    amp: torch.dtype | None = None,
    progress=None,
) -> Scores:
    """Maps and scores for uint8 or [0, 1] float images (N, C, S, S), in batches, in eval mode."""

    def predict(batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        prediction = detector.predict(batch)  # to host memory per batch: device memory stays one batch
        return prediction.maps.float().cpu().numpy(), prediction.scores.double().cpu().numpy()

    device = next(detector.parameters()).device
    with eval_mode(detector):
        parts = batched(predict, images, batch_size, device, amp, progress=progress)
    maps, scores = zip(*parts, strict=True)
    return Scores(maps=np.concatenate(maps).astype(np.float32), scores=np.concatenate(scores))


def selection_value(
    detector: Detector, images: torch.Tensor, batch_size: int = 32, amp: torch.dtype | None = None
) -> float:
    """Mean of the method's checkpoint-selection values over held-out normal images (lower is better)."""
    device = next(detector.parameters()).device
    with eval_mode(detector):
        values = batched(lambda b: detector.selection_scores(b).float(), images, batch_size, device, amp)
    total = sum(float(v.sum()) for v in values)
    return total / max(sum(v.numel() for v in values), 1)


# ------------------------------------------------------------------------------------- whole studies


@dataclass(frozen=True)
class ViewGeometry:
    """Where a volume's views sit: the slice axis, the square crop box every view was cut with (rows then
    columns, in the radiological view) and the uncropped view's shape. What maps need to go back onto the
    volume's grid (`kdmed score`) and what the app needs to cut the study's own pixels the same way."""

    axis: int
    crop_box: tuple[int, int, int, int]
    view_shape: tuple[int, int]


@dataclass(frozen=True)
class StudyResult:
    """Per-slice (or per-image) scores of one study, with display views and maps at view resolution.

    Slices the checkpoint's slice policy does not admit are not scored: their score is NaN, their
    `status` says why (`kdmed.contract`: outside the trained range, too little tissue) and they are never
    flagged. `inputs` holds the exact uint8 model input of every scored slice (what an explanation must
    attribute), `input_of[i]` its row for slice i (-1 when not scored)."""

    names: list[str]
    scores: np.ndarray  # (N,) raw scores; NaN for slices not scored
    normalized: np.ndarray  # (N,) 0.5 = threshold
    status: list[str]  # (N,) kdmed.contract.SCORED / OUTSIDE_RANGE / LITTLE_TISSUE
    views: list[np.ndarray]  # (C, h, w) [0, 1] display images (cropped slice views or the image)
    maps: list[np.ndarray]  # (h, w) anomaly maps at the view's resolution (zeros when not scored)
    inputs: np.ndarray  # (n_scored, C, S, S) uint8 model inputs
    input_of: np.ndarray  # (N,) int: row of `inputs`, -1 when not scored
    serving: ServingContract
    study_score: float
    slice_indices: list[int]
    geometry: ViewGeometry | None = None  # volumes only
    foreground: np.ndarray | None = None  # volumes: the (X, Y, Z) foreground mask preprocessing used
    out_of_distribution: OodCheck | None = None  # kdmed.ood: how far the study lies from the training inputs

    @property
    def threshold(self) -> float:
        return self.serving.calibration.threshold

    @property
    def flagged(self) -> np.ndarray:
        """(N,) bool at the calibrated threshold."""
        return self.flags_at(self.threshold)

    @property
    def study_flagged(self) -> bool:
        return self.study_flagged_at(self.threshold)

    @property
    def heat_scale(self) -> float:
        """The one divisor of this study's maps (`kdmed.rules.heat_scale`, floored at the normal level)."""
        return rules.heat_scale(self.maps, self.serving.calibration.map_floor)

    def flags_at(self, threshold: float) -> np.ndarray:
        """(N,) bool: slices above `threshold` (`kdmed.rules.flag`); unscored slices are never flagged."""
        return rules.flag(self.scores, threshold)

    def study_flagged_at(self, threshold: float) -> bool:
        return bool(rules.flag([self.study_score], threshold)[0])

    def flagged_order(self, threshold: float | None = None) -> list[int]:
        """Indices of the slices above `threshold` (default: the calibrated one), most suspicious first."""
        index = np.flatnonzero(self.flags_at(self.threshold if threshold is None else threshold))
        return index[np.argsort(-self.scores[index], kind="stable")].tolist()

    def count(self, status: str) -> int:
        return sum(s == status for s in self.status)


def study_items(
    serving: ServingContract, model_name: str, study
) -> tuple[list[dict], ViewGeometry | None, np.ndarray | None]:
    """Run the checkpoint's own preprocessing (the training transforms) on a loaded study: the items,
    for a volume where its views sit, and its foreground mask."""
    from kdmed.data.transforms import ExtractSlicesd, build_image_transform, volume_steps
    from kdmed.errors import StudyReadError

    size = serving.preprocessing.image_size
    if serving.kind == "volume":
        if not study.is_volume:
            raise StudyReadError(
                f"model '{model_name}' scores 3D volumes, but this study is a 2D image of shape "
                f"{study.array.shape}; upload a NIfTI or DICOM series."
            )
        policy = serving.slice_policy
        volume = volume_steps(serving.preprocessing, policy)({"image": study})
        items = ExtractSlicesd(policy, size)(volume)
        geometry = ViewGeometry(policy.axis, tuple(volume["crop_box"]), tuple(volume["view_shape"]))
        return items, geometry, volume["foreground"]
    if study.is_volume:
        raise StudyReadError(
            f"model '{model_name}' scores 2D images, but this study is a volume of shape "
            f"{study.array.shape}; upload a 2D image (png, jpg, bmp, tif)."
        )
    prep = serving.preprocessing
    item = build_image_transform(size, prep.stain_normalization, prep.center_crop)({"image": study})
    item.update(slice=0, status=SCORED, view=item["image"])
    return [item], None, None


def score_study(checkpoint, study, batch_size: int = 16, progress=None) -> StudyResult:
    """Score a study (or an image) with a loaded checkpoint exactly as the evaluate stage scored its test
    split: the checkpoint's preprocessing and slice policy, uint8 model inputs, its threshold, tie rule
    and study aggregation. The app, `kdmed score` and review call this."""
    from kdmed.calibration import normalized_score
    from kdmed.data.transforms import match_channels, resize_map, to_uint8

    serving = checkpoint.serving
    items, geometry, foreground = study_items(serving, checkpoint.header.card.name, study)
    channels = serving.preprocessing.channels
    scored = [i for i, item in enumerate(items) if item["status"] == SCORED]
    inputs = np.zeros(
        (0, channels, serving.preprocessing.image_size, serving.preprocessing.image_size), np.uint8
    )
    if scored:
        inputs = np.stack([to_uint8(match_channels(items[i]["image"], channels)) for i in scored])
    scores = np.full(len(items), np.nan)
    input_of = np.full(len(items), -1)
    maps: list[np.ndarray] = [np.zeros(item["view"].shape[-2:], np.float32) for item in items]
    if scored:
        device = next(checkpoint.detector.parameters()).device
        amp = amp_dtype(device, checkpoint.header.training.amp != "off")  # the evaluate stage's precision
        result = predict_images(
            checkpoint.detector, torch.from_numpy(inputs), batch_size, amp, progress=progress
        )
        for j, i in enumerate(scored):
            scores[i], input_of[i] = result.scores[j], j
            maps[i] = resize_map(result.maps[j], tuple(items[i]["view"].shape[-2:]))
    volume = serving.kind == "volume"
    guard = study_check(checkpoint.detector, serving.input_profile, inputs)
    return StudyResult(
        names=[f"slice {item['slice']}" if volume else "image" for item in items],
        scores=scores,
        normalized=np.where(
            np.isnan(scores), np.nan, normalized_score(np.nan_to_num(scores), serving.calibration)
        ),
        status=[item["status"] for item in items],
        views=[item["view"] for item in items],
        maps=maps,
        inputs=inputs,
        input_of=input_of,
        serving=serving,
        study_score=rules.aggregate_study(scores, serving.aggregation),
        slice_indices=[int(item["slice"]) for item in items],
        geometry=geometry,
        foreground=foreground,
        out_of_distribution=guard,
    )
