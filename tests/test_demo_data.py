"""The generated demo data: layouts the adapters expect, masks that match the abnormalities, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from kdmed.data.demo import (
    BrainDemoSpec,
    DemoSpec,
    OctDemoSpec,
    WbcDemoSpec,
    generate_demo,
    generate_oct,
    render_brain_case,
    render_oct_scan,
    render_wbc_cell,
)
from kdmed.data.demo.common import case_rng
from kdmed.errors import ConfigError

TINY = DemoSpec(
    seed=0,
    brain=BrainDemoSpec(normal_cases=1, abnormal_cases=2, shape=(48, 48, 32)),
    oct=OctDemoSpec(
        train_normal=2, valid_normal=1, valid_abnormal=2, test_normal=1, test_abnormal=2, height=64, width=96
    ),
    wbc=WbcDemoSpec(normal=2, abnormal=5, size=48),
)


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("demo")
    return root, generate_demo(root, TINY)


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.mode == "L", path
        return np.asarray(image)


def test_summary_counts_and_json(demo: tuple[Path, dict]) -> None:
    _, summary = demo
    json.dumps(summary)
    assert summary["seed"] == 0
    assert summary["brain"] == {"normal": 1, "abnormal": 2}
    assert summary["oct"]["train"] == {"good": 2}
    assert summary["oct"]["valid"] == {"good": 1, "Ungood": 2}
    assert summary["oct"]["test"] == {"good": 1, "Ungood": 2}
    assert summary["wbc"]["normal"] == 2 and summary["wbc"]["abnormal"] == 5
    assert sum(summary["wbc"]["abnormal_kinds"].values()) == 5


def test_layout_is_exactly_what_the_adapters_expect(demo: tuple[Path, dict]) -> None:
    root, _ = demo
    files = set(_tree(root))
    brain = {f"brain/demo_{i:05d}/demo_{i:05d}_{kind}.nii.gz" for i in range(3) for kind in ("flair", "seg")}
    oct_files = {
        "oct/train/good/img/normal_0000.png",
        "oct/train/good/img/normal_0001.png",
        "oct/valid/good/img/normal_0000.png",
        "oct/test/good/img/normal_0000.png",
    }
    for split in ("valid", "test"):
        for name in ("fluid_0000.png", "drusen_0001.png"):
            oct_files |= {f"oct/{split}/Ungood/img/{name}", f"oct/{split}/Ungood/label/{name}"}
    wbc_folders = (("images", "bmp"), ("masks", "png"), ("anomaly_masks", "png"))
    wbc = {"wbc/labels.csv"}
    wbc |= {f"wbc/{folder}/{i:03d}.{ext}" for i in range(1, 8) for folder, ext in wbc_folders}
    assert files == brain | oct_files | wbc  # also: no temporary files left behind


def test_brain_nifti_geometry_types_and_labels(demo: tuple[Path, dict]) -> None:
    root, _ = demo
    abnormal_seen = normal_seen = 0
    for case in sorted((root / "brain").iterdir()):
        flair = nib.load(case / f"{case.name}_flair.nii.gz")
        seg = nib.load(case / f"{case.name}_seg.nii.gz")
        assert flair.shape == seg.shape == (48, 48, 32)
        assert nib.aff2axcodes(flair.affine) == ("L", "P", "S")  # stored like DICOM: readers must reorient
        np.testing.assert_allclose(np.diag(flair.affine)[:3], [-1.0, -1.0, 1.0])
        np.testing.assert_array_equal(flair.affine, seg.affine)
        assert flair.header.get_zooms() == (1.0, 1.0, 1.0)
        assert flair.get_data_dtype() == np.float32 and seg.get_data_dtype() == np.uint8
        image, labels = np.asarray(flair.dataobj), np.asarray(seg.dataobj)
        assert set(np.unique(labels)) <= {0, 1, 2, 4}
        assert image.min() == 0.0 and 100.0 < image.max() < 2000.0
        if labels.any():
            abnormal_seen += 1
            assert np.all(image[labels > 0] > 0)  # inside the head
            lesion, tissue = image[labels == 2], image[(image > 0) & (labels == 0)]
            assert lesion.mean() > 1.3 * np.median(tissue)  # FLAIR-hyperintense oedema
        else:
            normal_seen += 1
    assert (normal_seen, abnormal_seen) == (1, 2)


def test_oct_images_and_masks(demo: tuple[Path, dict]) -> None:
    root, _ = demo
    for path in sorted((root / "oct").rglob("img/*.png")):
        image = _png(path)
        assert image.shape == (64, 96) and image.dtype == np.uint8
        label_path = path.parent.parent / "label" / path.name
        if path.parent.parent.name == "good":
            assert path.name.startswith("normal_") and not label_path.exists()
            continue
        mask = _png(label_path)
        assert mask.shape == image.shape and set(np.unique(mask)) == {0, 255}


@pytest.mark.parametrize("kind", ["fluid", "drusen"])
def test_oct_abnormality_lies_inside_the_retina(kind: str) -> None:
    for index in range(3):
        image, mask = render_oct_scan(256, 384, case_rng(0, "test", index), kind)
        assert mask.any() and mask.mean() < 0.1
        rows, cols = np.nonzero(mask)
        for col in np.unique(cols):  # retinal tissue (bright layers), not vitreous, lies just above the mask
            top = rows[cols == col].min()
            assert image[max(top - 30, 0) : top, max(col - 2, 0) : col + 3].max() > 100, (index, col)
        normal, _ = render_oct_scan(256, 384, case_rng(0, "test", index), "normal")
        assert np.abs(image[:8].astype(int).mean() - normal[:8].astype(int).mean()) < 2  # same vitreous noise


def test_wbc_images_masks_and_labels(demo: tuple[Path, dict]) -> None:
    root, _ = demo
    lines = (root / "wbc" / "labels.csv").read_text().splitlines()
    assert lines[0] == "image ID,class label"
    labels = {int(i): int(c) for i, c in (line.split(",") for line in lines[1:])}
    assert sorted(labels) == list(range(1, 8)) and sorted(labels.values()).count(2) == 5
    for index, label in labels.items():
        with Image.open(root / "wbc" / "images" / f"{index:03d}.bmp") as image:
            assert image.format == "BMP" and image.mode == "RGB" and image.size == (48, 48)
        cell = _png(root / "wbc" / "masks" / f"{index:03d}.png")
        anomaly = _png(root / "wbc" / "anomaly_masks" / f"{index:03d}.png")
        assert set(np.unique(cell)) == {0, 128, 255}
        assert set(np.unique(anomaly)) <= {0, 255}
        assert anomaly.any() == (label == 2)
        assert np.all(cell[anomaly > 0] > 0)  # the atypical region lies in the cell


def test_same_seed_same_bytes_other_seed_other_bytes(demo: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = demo
    generate_demo(tmp_path / "again", TINY)
    assert _tree(tmp_path / "again") == _tree(root)
    generate_demo(tmp_path / "other", DemoSpec(seed=1, brain=TINY.brain, oct=TINY.oct, wbc=TINY.wbc))
    first, other = _tree(root), _tree(tmp_path / "other")
    assert first.keys() == other.keys()
    images = [name for name in first if name.endswith(("_flair.nii.gz", ".bmp")) or "/img/" in name]
    assert all(first[name] != other[name] for name in images)


def test_a_case_does_not_depend_on_how_many_others_are_made(demo: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = demo
    generate_oct(
        tmp_path,
        OctDemoSpec(
            train_normal=1,
            valid_normal=0,
            valid_abnormal=0,
            test_normal=0,
            test_abnormal=3,
            height=64,
            width=96,
        ),
        seed=0,
    )
    for name in (
        "train/good/img/normal_0000.png",
        "test/Ungood/img/fluid_0000.png",
        "test/Ungood/label/drusen_0001.png",
    ):
        assert (tmp_path / "oct" / name).read_bytes() == (root / "oct" / name).read_bytes()


def test_rerun_replaces_domain_folders_only(tmp_path: Path) -> None:
    spec = DemoSpec(
        brain=BrainDemoSpec(1, 0, (32, 32, 32)),
        oct=OctDemoSpec(1, 0, 0, 0, 0, 64, 64),
        wbc=WbcDemoSpec(1, 0, 48),
    )
    generate_demo(tmp_path, spec)
    stray = tmp_path / "oct" / "train" / "good" / "img" / "stray.png"
    stray.write_bytes(b"x")
    keep = tmp_path / "notes.txt"
    keep.write_text("not ours")
    generate_demo(tmp_path, spec)
    assert not stray.exists() and keep.read_text() == "not ours"


def test_abnormal_cases_differ_from_normal_ones_only_at_the_abnormality() -> None:
    """Same case, with and without the abnormality: no global artefact (noise level, brightness) gives
    abnormal cases away; the change stays in the brain / the cell."""
    spec = BrainDemoSpec(shape=(64, 64, 40))
    normal, normal_seg = render_brain_case(spec, 3, 0, abnormal=False)
    abnormal, seg = render_brain_case(spec, 3, 0, abnormal=True)
    assert not normal_seg.any() and seg.any()
    changed = normal != abnormal
    assert changed[seg > 0].mean() > 0.9
    head = normal > 0
    np.testing.assert_array_equal(head, abnormal > 0)
    # the scalp (not the faces where the field of view cuts the head) keeps its noise and brightness
    scalp = head & ~ndimage.binary_erosion(head, iterations=2, border_value=1)
    assert scalp.sum() > 1000 and not changed[scalp].any()

    for kind in ("blast", "bizarre", "inclusions"):
        image, cell, anomaly = render_wbc_cell(64, case_rng(5, "test", 0), kind)
        plain, plain_cell, plain_anomaly = render_wbc_cell(64, case_rng(5, "test", 0), "normal")
        assert anomaly.any() and not plain_anomaly.any()
        diff = np.any(image != plain, axis=-1)
        near_cell = np.zeros_like(diff)
        rows, cols = np.nonzero((cell > 0) | (plain_cell > 0))
        near_cell[max(rows.min() - 4, 0) : rows.max() + 5, max(cols.min() - 4, 0) : cols.max() + 5] = True
        assert not diff[~near_cell].any(), kind


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: BrainDemoSpec(normal_cases=-1), "normal_cases"),
        (lambda: BrainDemoSpec(abnormal_cases=True), "abnormal_cases"),
        (lambda: BrainDemoSpec(shape=(128, 128)), "shape"),
        (lambda: BrainDemoSpec(shape=(128, 128, 8)), "shape.z"),
        (lambda: BrainDemoSpec(normal_cases=0, abnormal_cases=0), "normal_cases"),
        (lambda: OctDemoSpec(test_abnormal=-2), "test_abnormal"),
        (lambda: OctDemoSpec(height=16), "height"),
        (lambda: WbcDemoSpec(size="120"), "size"),
        (lambda: WbcDemoSpec(normal=2.5), "normal"),
        (lambda: DemoSpec(seed=-1), "seed"),
        (lambda: DemoSpec(oct={"train_normal": 3}), "oct"),
    ],
)
def test_bad_spec_values_raise_config_error_naming_the_field(build, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        build()


def test_list_shape_from_yaml_becomes_a_tuple() -> None:
    assert BrainDemoSpec(shape=[64, 64, 40]).shape == (64, 64, 40)
