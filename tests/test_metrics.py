"""Tests for kdmed.metrics: hand-computed cases, agreement with sklearn and a brute-force AUPRO, bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import average_precision_score, roc_auc_score

from kdmed.errors import KdmedError
from kdmed.metrics import (
    DegenerateSampleError,
    MetricInputError,
    aupro,
    aupro_divide_by_last_fpr,
    average_precision,
    bootstrap,
    bootstrap_ci,
    f1_max,
    image_auroc,
    pixel_auroc,
    pixel_bootstrap,
    resize_mask_nearest,
    sensitivity_at_specificity,
    summarize,
)
from kdmed.metrics.bootstrap import _edges, _group_histograms, binned_pixel_metrics

# ---------------------------------------------------------------- helpers


def reference_aupro(maps, masks, fpr_limit=0.3, fpr_mode="global"):
    """Brute force, one threshold at a time: the definition read literally (slow, tiny inputs only).

    fpr_mode "global" is the MVTec definition; "per_image" (mean of each image's FPR) and "anomalous_only"
    (negatives of anomalous images only) are inflated public variants, used to show that aupro differs.
    """
    maps, masks = np.asarray(maps, dtype=np.float64), np.asarray(masks) > 0
    regions = []
    for i in range(len(maps)):
        labelled, n = ndimage.label(masks[i], structure=np.ones((3, 3)))
        regions += [(i, labelled == k) for k in range(1, n + 1)]
    neg = ~masks
    if fpr_mode == "anomalous_only":
        neg = neg & masks.any(axis=(1, 2))[:, None, None]
    points = [(0.0, 0.0)]
    for t in np.unique(maps)[::-1]:
        pred = maps >= t
        if fpr_mode == "per_image":
            fpr = np.mean([(pred[i] & neg[i]).sum() / neg[i].sum() for i in range(len(maps))])
        else:
            fpr = (pred & neg).sum() / neg.sum()
        points.append((fpr, np.mean([pred[i][r].mean() for i, r in regions])))
    area = 0.0
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        if x0 >= fpr_limit:
            break
        if x1 > fpr_limit:
            x1, y1 = fpr_limit, y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
        area += (x1 - x0) * (y0 + y1) / 2
    return area / fpr_limit


def blob_data(n_images=12, size=16, seed=0, decimals=2):
    """Random maps (rounded, so with ties) and masks with 0-2 blobs per image; the first 2 images normal."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n_images, size, size), dtype=np.uint8)
    for i in range(2, n_images):
        for _ in range(rng.integers(1, 3)):
            r, c = rng.integers(0, size - 4, 2)
            h, w = rng.integers(1, 5, 2)
            masks[i, r : r + h, c : c + w] = 1
    maps = rng.random(masks.shape) + 0.6 * masks
    return np.round(maps, decimals), masks


# Hand case used several times: image A (2x3) holds one region of 2 pixels (scores 0.9 and 0.7), image B
# (2x3) is normal. Negatives (10): A {0.2, 0.6, 0.1, 0.0}, B {0.7, 0.3, 0.05, 0, 0, 0}.
HAND_MAPS = np.array([[[0.9, 0.7, 0.2], [0.6, 0.1, 0.0]], [[0.7, 0.3, 0.05], [0.0, 0.0, 0.0]]])
HAND_MASKS = np.array([[[1, 1, 0], [0, 0, 0]], [[0, 0, 0], [0, 0, 0]]])
# Curve, threshold by threshold (anomalous iff score >= t), from the origin:
#   t=0.9: FP 0, region 1/2 -> (0.0, 0.5)
#   t=0.7: FP 1 (B's 0.7), region 2/2 -> (0.1, 1.0)
#   t=0.6: FP 2 -> (0.2, 1.0);  t=0.3: FP 3 -> (0.3, 1.0)
# Area to 0.3: (0.5 + 1) / 2 * 0.1 + 1.0 * 0.2 = 0.275 -> AUPRO = 0.275 / 0.3 = 0.91667.
HAND_AUPRO = 0.275 / 0.3


# ---------------------------------------------------------------- image metrics


def test_image_auroc_two_plus_two_by_hand():
    # Pairs (pos, neg): 0.35>0.1 yes, 0.35>0.4 no, 0.8>0.1 yes, 0.8>0.4 yes -> 3/4.
    assert image_auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    # A tie between a positive and a negative counts 1/2: (1 + 0.5 + 2) / 4 = 0.875.
    assert image_auroc([0, 0, 1, 1], [0.1, 0.4, 0.4, 0.8]) == 0.875


def test_average_precision_by_hand():
    # Descending: 0.8 P (P=1, R=.5), 0.4 N (P=.5, R=.5), 0.35 P (P=2/3, R=1), 0.1 N (P=.5, R=1).
    # AP = 0.5 * 1 + 0 + 0.5 * 2/3 + 0 = 5/6.
    assert average_precision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(5 / 6, abs=1e-15)


def test_f1_max_by_hand():
    # F1 = 2TP / (TP + FP + P): t=0.8 -> 2/3, t=0.4 -> 1/2, t=0.35 -> 4/5, t=0.1 -> 2/3.
    f1, threshold = f1_max([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert f1 == pytest.approx(0.8) and threshold == np.nextafter(0.35, 0)  # flag iff score > threshold


def test_f1_max_tie_returns_highest_threshold():
    # t=0.9 -> 2/3, t=0.8 -> 1/2, t=0.7 -> 2/5, t=0.6 -> 2/3: both 0.9 and 0.6 reach 2/3.
    f1, threshold = f1_max([1, 0, 0, 1], [0.9, 0.8, 0.7, 0.6])
    assert f1 == pytest.approx(2 / 3) and threshold == np.nextafter(0.9, 0)


def test_sensitivity_at_specificity_by_hand():
    labels = [0] * 5 + [1] * 4
    scores = [0.1, 0.2, 0.3, 0.4, 0.5] + [0.3, 0.45, 0.6, 0.9]
    # 0.8 * 5 = 4 negatives at or below: threshold 0.4; positives above it: 0.45, 0.6, 0.9 -> 3/4.
    sens, thr = sensitivity_at_specificity(labels, scores, 0.8)
    assert sens == 0.75 and thr == 0.4
    # ceil(0.7 * 5) = 4: same threshold.
    assert sensitivity_at_specificity(labels, scores, 0.7) == (sens, thr)
    # 3 below: threshold just above 0.3; the positive tied at 0.3 counts as normal -> 3/4.
    assert sensitivity_at_specificity(labels, scores, 0.6).sensitivity == 0.75
    # All 5 below: threshold just above 0.5 -> 0.6, 0.9 -> 1/2.
    assert sensitivity_at_specificity(labels, scores, 1.0).sensitivity == 0.5


def test_sensitivity_at_specificity_ties_and_float_noise():
    # Negatives 0.1, 0.2, 0.2, 0.4; target 0.5 -> k = 2 -> just above 0.2: the tied 0.2 is below too, so the
    # achieved specificity is 3/4 (>= target), computed from the negatives only.
    neg = np.array([0.1, 0.2, 0.2, 0.4])
    sens, thr = sensitivity_at_specificity([0, 0, 0, 0, 1], [*neg, 0.3], 0.5)
    assert np.mean(neg <= thr) == 0.75 and sens == 1.0
    # 0.95 * 20 must give 19 negatives below, not 20 (float product 19.000000000000004 would round up).
    scores = list(range(20)) + [18.5]
    assert sensitivity_at_specificity([0] * 20 + [1], scores, 0.95).sensitivity == 1.0


def test_threshold_depends_on_negatives_only():
    labels = [0, 0, 0, 0, 1, 1]
    a = sensitivity_at_specificity(labels, [1, 2, 3, 4, 0.5, 9], 0.75)
    b = sensitivity_at_specificity(labels, [1, 2, 3, 4, 3.5, 2.5], 0.75)
    assert a.threshold == b.threshold == 3.0


@pytest.mark.parametrize("seed", range(5))
def test_image_metrics_agree_with_sklearn(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.normal(size=300) + labels, 1)  # rounding makes ties
    assert image_auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    expected_ap = average_precision_score(labels, scores)
    assert average_precision(labels, scores) == pytest.approx(expected_ap, abs=1e-12)
    f1, threshold = f1_max(labels, scores)
    predicted = scores > threshold
    tp = np.sum(predicted & (labels == 1))
    assert f1 == pytest.approx(2 * tp / (predicted.sum() + labels.sum()))


def test_image_metrics_accept_bool_and_float32():
    labels = np.array([False, False, True, True])
    scores = np.array([0.1, 0.4, 0.35, 0.8], dtype=np.float32)
    assert image_auroc(labels, scores) == 0.75
    assert isinstance(image_auroc(labels, scores), float)


# ---------------------------------------------------------------- pixel AUROC and mask resizing


def test_pixel_auroc_by_hand():
    # Positives {0.9, 0.3}, negatives {0.1, 0.4}: 0.9 beats both, 0.3 beats 0.1 only -> 3/4.
    assert pixel_auroc([[[0.9, 0.1], [0.4, 0.3]]], [[[1, 0], [0, 1]]]) == 0.75


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pixel_auroc_equals_sklearn_on_flattened(dtype):
    maps, masks = blob_data(seed=3)
    maps = maps.astype(dtype)
    expected = roc_auc_score(masks.ravel(), maps.ravel())
    assert pixel_auroc(maps, masks) == pytest.approx(expected, abs=1e-12)


def test_resize_mask_nearest_by_hand():
    mask = np.array([[0, 1], [2, 0]], dtype=np.uint8)
    up = resize_mask_nearest(mask, 4)  # each pixel becomes a 2x2 block
    assert np.array_equal(up, np.kron(mask, np.ones((2, 2), dtype=np.uint8))) and up.dtype == np.uint8
    # 4 -> 2: samples rows/cols floor((i + 0.5) * 2) = 1, 3.
    big = np.arange(16).reshape(4, 4)
    assert np.array_equal(resize_mask_nearest(big, (2, 2)), big[np.ix_([1, 3], [1, 3])])
    stack = resize_mask_nearest(np.stack([mask, mask]), (4, 6))
    assert stack.shape == (2, 4, 6) and set(np.unique(stack)) <= {0, 1, 2}


def test_resize_mask_nearest_matches_pil_nearest():
    pil = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    for in_h, in_w, out_h, out_w in [(7, 5, 3, 4), (5, 7, 13, 11), (9, 15, 224, 224), (155, 241, 256, 256)]:
        mask = rng.integers(0, 5, (in_h, in_w)).astype(np.uint8)  # odd input sizes: no border ties
        expected = np.asarray(pil.fromarray(mask).resize((out_w, out_h), pil.NEAREST))
        assert np.array_equal(resize_mask_nearest(mask, (out_h, out_w)), expected)


# ---------------------------------------------------------------- AUPRO


def test_aupro_two_tiny_images_by_hand():
    assert aupro(HAND_MAPS, HAND_MASKS) == pytest.approx(HAND_AUPRO, abs=1e-12)
    # Limit 0.05 cuts the sloped segment (0, 0.5)-(0.1, 1.0) at PRO 0.75:
    # area (0.5 + 0.75) / 2 * 0.05 = 0.03125 -> 0.625.
    assert aupro(HAND_MAPS, HAND_MASKS, fpr_limit=0.05) == pytest.approx(0.625, abs=1e-12)
    assert reference_aupro(HAND_MAPS, HAND_MASKS) == pytest.approx(HAND_AUPRO, abs=1e-12)


def test_aupro_differs_from_per_image_and_anomalous_only_fpr():
    # Per-image FPR (mean of A's FP/4 and B's FP/6): t=0.9 -> (0, .5); t=0.7 -> ((0 + 1/6) / 2, 1) =
    # (1/12, 1); area (0.5 + 1) / 2 / 12 + (0.3 - 1/12) = 0.279167 -> 0.93056, not 0.91667.
    per_image = reference_aupro(HAND_MAPS, HAND_MASKS, fpr_mode="per_image")
    assert per_image == pytest.approx((0.75 / 12 + 0.3 - 1 / 12) / 0.3, abs=1e-12)
    # Dropping the normal image B from the FPR: A's negatives all score < 0.7, so (0, 1) is reached: 1.0.
    assert reference_aupro(HAND_MAPS, HAND_MASKS, fpr_mode="anomalous_only") == pytest.approx(1.0)
    assert aupro(HAND_MAPS, HAND_MASKS) < per_image - 0.01


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("fpr_limit", [0.3, 0.05, 1.0])
def test_aupro_equals_brute_force_definition(seed, fpr_limit):
    maps, masks = blob_data(n_images=6, size=10, seed=seed, decimals=2)
    assert aupro(maps, masks, fpr_limit) == pytest.approx(reference_aupro(maps, masks, fpr_limit), abs=1e-12)


def test_aupro_float32_maps_exact():
    maps, masks = blob_data(seed=5, decimals=3)
    maps32 = maps.astype(np.float32)
    assert aupro(maps32, masks) == pytest.approx(reference_aupro(maps32, masks), abs=1e-12)


def test_aupro_invariant_to_monotone_transforms():
    maps, masks = blob_data(seed=1, decimals=6)
    base = aupro(maps, masks)
    assert aupro(np.exp(3 * maps), masks) == pytest.approx(base, abs=1e-12)
    assert aupro(10 * maps - 4, masks) == pytest.approx(base, abs=1e-12)
    assert pixel_auroc(np.exp(3 * maps), masks) == pytest.approx(pixel_auroc(maps, masks), abs=1e-12)


def test_aupro_perfect_map_is_one():
    _, masks = blob_data(seed=2)
    rng = np.random.default_rng(0)
    maps = masks + 0.9 * rng.random(masks.shape)  # every anomalous pixel above every normal one
    assert aupro(maps, masks) == pytest.approx(1.0, abs=1e-12)
    assert pixel_auroc(maps, masks) == 1.0


def test_aupro_weights_regions_equally_not_pixels():
    # One 4x4 image: a big region (rows 0-1, 8 pixels) scored 0.9 = found, a 1-pixel region at (3, 3)
    # scored 0.1 = missed, 7 negatives at 0.5. t=0.9: PRO = (1 + 0) / 2 -> (0, 0.5); t=0.5: (1, 0.5).
    # AUPRO = 0.5, while a pixel-weighted overlap would give 8/9 = 0.889.
    maps = np.full((1, 4, 4), 0.5)
    masks = np.zeros((1, 4, 4), dtype=int)
    masks[0, :2], maps[0, :2] = 1, 0.9
    masks[0, 3, 3], maps[0, 3, 3] = 1, 0.1
    assert aupro(maps, masks) == pytest.approx(0.5, abs=1e-12)


def test_aupro_uses_8_connectivity_within_images_only():
    # Pixels (0,0) and (1,1) touch diagonally: with (1,2), one region of 3, only (0,0) found: PRO 1/3 at
    # FPR 0 -> AUPRO 1/3 (4-connectivity would give two regions and PRO (1 + 0) / 2 = 0.5).
    maps = np.full((1, 3, 4), 0.5)
    masks = np.zeros((1, 3, 4), dtype=int)
    masks[0, 0, 0] = masks[0, 1, 1] = masks[0, 1, 2] = 1
    maps[0, 0, 0], maps[0, 1, 1], maps[0, 1, 2] = 0.9, 0.1, 0.1
    assert aupro(maps, masks) == pytest.approx(1 / 3, abs=1e-12)
    # Same position in two images: two regions, never joined across the stack. Image 0 has 2 found pixels,
    # image 1 one missed pixel: PRO (1 + 0) / 2 = 0.5 (joined it would be 2/3).
    maps = np.full((2, 3, 3), 0.5)
    masks = np.zeros((2, 3, 3), dtype=int)
    masks[0, 0, :2], maps[0, 0, :2] = 1, 0.9
    masks[1, 0, 0], maps[1, 0, 0] = 1, 0.1
    assert aupro(maps, masks) == pytest.approx(0.5, abs=1e-12)


def test_aupro_label_masks_count_as_anomalous():
    masks = HAND_MASKS * 4  # BraTS-like label values
    assert aupro(HAND_MAPS, masks) == pytest.approx(HAND_AUPRO, abs=1e-12)


# Grid case for the BMAD variant. One 2x7 image, 10 negatives (2 at 0.5025, 8 at 0.0) and one region of 4
# pixels (1 at 1.0, 3 at 0.501). Exact curve: (0,0) -> t=1.0 (0, .25) -> t=.5025 (.2, .25) -> t=.501 (.2, 1).
# aupro: (0.2 * 0.25 + 0.1 * 1) / 0.3 = 0.5.
# Exact vertices, divide by last kept FPR (< 0.3): area 0.2 * 0.25 = 0.05, / 0.2 = 0.25 (smaller).
# BMAD grid arange(0, 1, 0.005), rule score > t: t <= 0.5 gives (0.2, 1.0), t >= 0.505 gives (0, 0.25);
# no grid point falls in [0.501, 0.5025), so the vertex (0.2, 0.25) is skipped and the chord from (0, .25)
# to (.2, 1) gives (0.25 + 1) / 2 * 0.2 = 0.125, / 0.2 = 0.625 (larger).
GRID_MAPS = np.array([[[1.0, 0.501, 0.501, 0.501, 0.5025, 0.5025, 0.0], [0.0] * 7]])
GRID_MASKS = np.array([[[1, 1, 1, 1, 0, 0, 0], [0] * 7]])


def test_aupro_divide_by_last_fpr_differs_by_hand():
    assert aupro(GRID_MAPS, GRID_MASKS) == pytest.approx(0.5, abs=1e-12)
    assert aupro_divide_by_last_fpr(GRID_MAPS, GRID_MASKS) == pytest.approx(0.25, abs=1e-12)
    bmad = aupro_divide_by_last_fpr(GRID_MAPS, GRID_MASKS, num_thresholds=200)
    assert bmad == pytest.approx(0.625, abs=1e-12) and bmad > aupro(GRID_MAPS, GRID_MASKS)
    # HAND case: kept (0,0) (0,.5) (.1,1) (.2,1): area 0.175 / 0.2 = 0.875 < 0.91667.
    assert aupro_divide_by_last_fpr(HAND_MAPS, HAND_MASKS) == pytest.approx(0.875, abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_divide_by_last_fpr_on_exact_vertices_never_exceeds_aupro(seed):
    # PRO is non-decreasing in FPR, so its mean over [0, f_last] <= its mean over [0, 0.3].
    maps, masks = blob_data(seed=seed, decimals=3)
    assert aupro_divide_by_last_fpr(maps, masks) <= aupro(maps, masks) + 1e-12


def test_binned_metrics_match_exact_within_1e3():
    # The fast pixel bootstrap evaluates the curves at quantile bin edges: check its full-data values.
    maps, masks = blob_data(n_images=30, size=24, seed=7, decimals=3)
    positive = masks > 0
    edges = _edges(maps[~positive], 0.3, 1000)
    stats = _group_histograms(maps, positive, np.arange(30), 30, edges)
    pooled = [s.sum(0, keepdims=True) for s in stats]  # every group drawn once
    auroc, pro = binned_pixel_metrics(*pooled[:3], pooled[3], 0.3)
    assert abs(auroc[0] - pixel_auroc(maps, masks)) < 1e-3
    assert abs(pro[0] - aupro(maps, masks)) < 1e-3


# ---------------------------------------------------------------- bootstrap


def grouped_image_data(n_groups, per_group=4, seed=0):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_groups), per_group)
    labels = rng.integers(0, 2, groups.size)
    scores = rng.normal(size=groups.size) + labels + rng.normal(size=n_groups)[groups]
    return labels, scores, groups


def test_bootstrap_ci_contains_estimate_and_is_deterministic():
    labels, scores, groups = grouped_image_data(40)
    low, high = bootstrap_ci(image_auroc, labels, scores, groups, n_boot=300)
    assert low < image_auroc(labels, scores) < high
    assert bootstrap_ci(image_auroc, labels, scores, groups, n_boot=300) == (low, high)
    assert bootstrap_ci(image_auroc, labels, scores, groups, n_boot=300, seed=1) != (low, high)


def test_bootstrap_ci_narrows_with_more_groups():
    small = bootstrap_ci(image_auroc, *grouped_image_data(15), n_boot=300)
    large = bootstrap_ci(image_auroc, *grouped_image_data(240), n_boot=300)
    assert large[1] - large[0] < 0.6 * (small[1] - small[0])


def test_bootstrap_resamples_whole_groups():
    groups = np.array(["p3", "p1", "p2", "p1", "p3", "p3", "p2"])
    sizes = {"p1": 2, "p2": 2, "p3": 3}
    seen = []

    def record(ids, labels):
        drawn = groups[ids]
        seen.append(drawn)
        return float(len(ids))

    bootstrap(record, np.arange(groups.size), np.zeros(groups.size), groups=groups, n_boot=20)
    for drawn in seen[1:]:  # seen[0] is the full-data call
        names, counts = np.unique(drawn, return_counts=True)
        assert all(c % sizes[n] == 0 for n, c in zip(names, counts, strict=True))  # only whole groups
        assert len(drawn) >= 6 and len(drawn) <= 9  # 3 groups drawn, sizes 2-3 each


def test_bootstrap_skips_single_class_resamples_and_counts_them():
    # 10 patients, only patient 0 has anomalous images: (9/10)^10 = 35% of resamples lack it.
    groups = np.repeat(np.arange(10), 3)
    labels = (groups == 0).astype(int)
    scores = np.linspace(0, 1, groups.size)
    result = bootstrap(image_auroc, labels, scores, groups=groups, n_boot=200, max_skipped=0.6)
    assert 40 < result.n_skipped < 110 and result.replicates.size == 200 - result.n_skipped
    with pytest.raises(MetricInputError, match="resamples were degenerate"):
        bootstrap(image_auroc, labels, scores, groups=groups, n_boot=200)


def test_bootstrap_of_pixel_metric_and_pixel_bootstrap_agree():
    maps, masks = blob_data(n_images=24, size=16, seed=4, decimals=3)
    groups = np.repeat(np.arange(12), 2)
    exact = bootstrap(pixel_auroc, maps, masks, groups=groups, n_boot=40, seed=3)
    exact_pro = bootstrap(aupro, maps, masks, groups=groups, n_boot=40, seed=3)
    fast = pixel_bootstrap(maps, masks, groups, n_boot=40, seed=3)
    # Same seed, same group draws: replicate by replicate, binned values within 1e-3 of exact ones.
    assert fast["pixel_auroc"].n_skipped == exact.n_skipped
    np.testing.assert_allclose(fast["pixel_auroc"].replicates, exact.replicates, atol=1e-3)
    np.testing.assert_allclose(fast["aupro"].replicates, exact_pro.replicates, atol=1e-3)
    assert fast["aupro"].estimate == aupro(maps, masks)
    assert fast["aupro"].low < fast["aupro"].estimate < fast["aupro"].high


def test_pixel_bootstrap_deterministic_by_seed():
    maps, masks = blob_data(n_images=12, seed=6)
    groups = np.arange(12) // 2
    a = pixel_bootstrap(maps, masks, groups, n_boot=50, seed=5)["aupro"]
    b = pixel_bootstrap(maps, masks, groups, n_boot=50, seed=5)["aupro"]
    c = pixel_bootstrap(maps, masks, groups, n_boot=50, seed=6)["aupro"]
    assert a.interval == b.interval != c.interval


def test_summarize_matches_individual_functions():
    labels, scores, groups = grouped_image_data(30)
    out = summarize(labels, scores, groups, specificity=0.9, n_boot=100)
    assert out["image_auroc"] == image_auroc(labels, scores)
    assert (out["f1_max"], out["f1_threshold"]) == tuple(f1_max(labels, scores))
    assert out["sensitivity_at_specificity"] == sensitivity_at_specificity(labels, scores, 0.9).sensitivity
    assert out["image_auroc_ci_low"] < out["image_auroc"] < out["image_auroc_ci_high"]
    assert out["n_groups"] == 30 and all(isinstance(v, float) for v in out.values())
    assert "image_auroc_ci_low" not in summarize(labels, scores)


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: image_auroc([0, 1, 2], [0.1, 0.2, 0.3]), MetricInputError, r"only 0 .* and 1 .*got \[2\]"),
        (lambda: image_auroc([[0, 1]], [[0.1, 0.2]]), MetricInputError, r"labels must be .*1-D.*\(1, 2\)"),
        (lambda: image_auroc([0, 1], [0.1]), MetricInputError, r"scores must have shape \(2,\).*\(1,\)"),
        (lambda: image_auroc([0, 1], [0.1, np.nan]), MetricInputError, "scores must be finite"),
        (lambda: image_auroc([1, 1], [0.1, 0.2]), DegenerateSampleError, r"only anomalous.*both classes"),
        (lambda: average_precision([0, 0], [0.1, 0.2]), DegenerateSampleError, "only normal"),
        (lambda: image_auroc(["a", "b"], [0.1, 0.2]), MetricInputError, "real numeric"),
        (lambda: sensitivity_at_specificity([0, 1], [0.1, 0.2], 0), MetricInputError, "specificity must"),
        (lambda: sensitivity_at_specificity([0, 1], [0.1, 0.2], 1.5), MetricInputError, "got 1.5"),
        (lambda: aupro(HAND_MAPS[0], HAND_MASKS[0]), MetricInputError, r"\(N, H, W\).*map\[None\]"),
        (lambda: aupro(HAND_MAPS, HAND_MASKS[:, :1]), MetricInputError, "resize_mask_nearest"),
        (lambda: aupro(HAND_MAPS, HAND_MASKS * 0.5), MetricInputError, "interpolation"),
        (lambda: aupro(HAND_MAPS, -HAND_MASKS), MetricInputError, "masks must be >= 0"),
        (lambda: aupro(HAND_MAPS, HAND_MASKS, fpr_limit=0), MetricInputError, "fpr_limit must satisfy"),
        (lambda: aupro(HAND_MAPS, 0 * HAND_MASKS), DegenerateSampleError, "no anomalous pixel"),
        (lambda: aupro(HAND_MAPS, 1 + HAND_MASKS), DegenerateSampleError, "no negative pixel"),
        (lambda: pixel_auroc(np.where(HAND_MASKS, np.inf, 0), HAND_MASKS), MetricInputError, "finite"),
        (lambda: resize_mask_nearest(np.zeros((2, 2)), (0, 3)), MetricInputError, "size must be"),
        (lambda: resize_mask_nearest(np.zeros(4), 2), MetricInputError, r"mask must be .*\(4,\)"),
        (lambda: bootstrap_ci(image_auroc, [0, 1], [0.1, 0.2], [1]), MetricInputError, r"groups .*\(2,\)"),
        (lambda: bootstrap_ci(image_auroc, [0, 1], [0.1, 0.2], [1, 1]), MetricInputError, "2 distinct"),
        (lambda: bootstrap_ci(f1_max, [0, 1], [0.1, 0.2], [1, 2]), MetricInputError, r"f1_max\(y, s\)\.f1"),
        (lambda: bootstrap_ci(image_auroc, [0, 1], [0.1, 0.2], [1, 2], n_boot=1), MetricInputError, "n_boot"),
        (lambda: bootstrap_ci(image_auroc, [0, 1], [0.1, 0.2], [1, 2], alpha=1), MetricInputError, "alpha"),
        (
            lambda: aupro_divide_by_last_fpr(HAND_MAPS, HAND_MASKS, num_thresholds=1),
            MetricInputError,
            "num_thresholds",
        ),
    ],
)
def test_input_validation(call, error, match):
    with pytest.raises(error, match=match) as info:
        call()
    assert isinstance(info.value, ValueError) and isinstance(info.value, KdmedError)


# ---------------------------------------------------------------- scale


@pytest.mark.slow
def test_pixel_metrics_memory_on_500_images_of_256():
    import tracemalloc

    rng = np.random.default_rng(0)
    maps = rng.random((500, 256, 256), dtype=np.float32)
    masks = np.zeros(maps.shape, dtype=bool)
    masks[:250, 100:140, 90:150] = True
    maps[masks] += 0.3
    tracemalloc.start()
    pixel_auroc(maps, masks)
    aupro(maps, masks)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 5 * maps.nbytes  # no float64 copy of every pixel (that alone would be 2x, plus sorting)


def test_roc_and_pr_points_by_hand():
    """The curves evaluate writes to roc.csv / pr.csv (scikit-learn's, every point kept), on the 2 + 2
    example worked by hand: scores 0.8 (anomalous), 0.4 (normal), 0.35 (anomalous), 0.1 (normal)."""
    from kdmed.metrics.curves import pr_points, roc_points

    labels, scores = np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])
    roc = [(r["fpr"], r["tpr"], r["threshold"]) for r in roc_points(labels, scores)]
    assert roc[1:] == [(0.0, 0.5, 0.8), (0.5, 0.5, 0.4), (0.5, 1.0, 0.35), (1.0, 1.0, 0.1)]
    assert roc[0][:2] == (0.0, 0.0) and 0.8 < roc[0][2] < 0.8 + 1e-9
    pr = [(r["recall"], r["precision"], r["threshold"]) for r in pr_points(labels, scores)]
    assert pr == [(0.5, 1.0, 0.8), (0.5, 0.5, 0.4), (1.0, pytest.approx(2 / 3), 0.35), (1.0, 0.5, 0.1)]


@pytest.mark.parametrize("seed", range(3))
def test_the_written_curves_have_the_reported_areas(seed):
    """The trapezoid area under roc.csv's points is the AUROC in metrics.json, and the step sum over
    pr.csv's points is its average precision (ties included)."""
    from kdmed.metrics.curves import pr_points, roc_points

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 80)
    labels[:2] = (0, 1)
    scores = np.round(rng.normal(size=80) + labels, 1)
    roc = roc_points(labels, scores)
    fpr, tpr = np.array([r["fpr"] for r in roc]), np.array([r["tpr"] for r in roc])
    assert np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2) == pytest.approx(
        image_auroc(labels, scores), abs=1e-12
    )
    pr = pr_points(labels, scores)
    recall, precision = np.array([r["recall"] for r in pr]), np.array([r["precision"] for r in pr])
    step = np.sum(np.diff(recall, prepend=0.0) * precision)
    assert step == pytest.approx(average_precision(labels, scores), abs=1e-12)


def test_histogram_rows_count_each_class_in_shared_bins():
    from kdmed.metrics.curves import histogram_rows

    labels = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.0, 0.1, 0.1, 0.9, 1.0])
    rows = histogram_rows(labels, scores, bins=2)
    assert rows == [
        {"score": 0.25, "normal": 3, "anomalous": 0},
        {"score": 0.75, "normal": 0, "anomalous": 2},
    ]
