"""`kdmed score`: the JSON report, maps written back on the input's own grid, folders of images, errors.

Geometry tests replace the detector's `predict` with "the map is the input image": a bright blob painted
at known input voxels must then come back at the same voxel indices, whatever the file's orientation, so
they check the inverse of the preprocessing (crop, resize, radiological view, RAS reorientation), not the
model. The report tests use a random-init STPM, as the app tests do.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from fake_models import write_checkpoint
from PIL import Image

from kdmed.calibration import normalized_score
from kdmed.checkpoint import load_checkpoint
from kdmed.cli import main
from kdmed.data.transforms import foreground_mask, normalize_percentiles
from kdmed.models.base import Prediction
from kdmed.models.stpm import STPM
from kdmed.score import score_source


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {kind: write_checkpoint(root / f"{kind}.safetensors", kind) for kind in ("volume", "image")}


@pytest.fixture
def identity_detector(monkeypatch):
    """predict(x) -> the image itself as the map (first channel, values in [0, 1]), its max as the score."""

    def predict(self, x01):
        maps = x01[:, 0].float()
        return Prediction(maps=maps, scores=maps.flatten(1).amax(dim=1))

    monkeypatch.setattr(STPM, "predict", predict)


def brain(shape=(40, 40, 12), seed=0) -> np.ndarray:
    """Tissue in a box, empty first/last two slices (too little tissue to score)."""
    volume = np.zeros(shape, np.float32)
    volume[8:32, 6:34, 2:10] = 100 + np.random.default_rng(seed).normal(0, 5, (24, 28, 8))
    return volume


def strict_json(text: str):
    def refuse(constant):
        raise ValueError(f"{constant} is not valid JSON")

    return json.loads(text, parse_constant=refuse)


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["score", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ------------------------------------------------------------------------------------------ the report


def test_volume_report_is_valid_json_with_consistent_scores(models, tmp_path, capsys):
    path = tmp_path / "study.nii.gz"
    nib.save(nib.Nifti1Image(brain(), np.diag([1.0, 1.0, 2.0, 1.0])), path)
    code, out, err = run_cli(capsys, str(path), "--model", str(models["volume"]), "--batch-size", "4")
    assert code == 0, err
    report = strict_json(out)
    assert report["model"] == {
        "path": str(models["volume"]),
        "method": "stpm",
        "backbone": "resnet18",
        "dataset": "demo",
        "kind": "volume",
        "image_size": 64,
        "trained_at": "2026-11-22T00:00:00+00:00",
        "threshold_rule": "specificity",
        "study_aggregation": "max",
        "slice_policy": "slices 0 to the last slice along axis 2 with at least 50 foreground pixels",
    }
    assert report["kind"] == "volume" and report["threshold"] == 0.5
    assert report["input"]["shape"] == [40, 40, 12] and report["input"]["orientation"] == "RAS"
    slices = report["slices"]
    assert [s["slice"] for s in slices] == list(range(12)) and report["n_slices"] == 12
    empty = [s for s in slices if s["slice"] in (0, 1, 10, 11)]
    assert all(s["score"] is None and s["normalized"] is None and not s["flagged"] for s in empty)
    scored = [s for s in slices if s["slice"] in range(2, 10)]
    assert report["n_scored"] == len(scored) == 8
    calibration = load_checkpoint(models["volume"]).serving.calibration
    for s in scored:
        assert math.isfinite(s["score"])
        assert s["flagged"] == (s["score"] > 0.5)
        assert s["normalized"] == pytest.approx(float(normalized_score(s["score"], calibration)))
    assert report["n_flagged"] == sum(s["flagged"] for s in slices)
    assert report["study_score"] == max(s["score"] for s in scored)
    assert report["study_flagged"] == (report["study_score"] > 0.5)


def test_normalised_score_is_one_half_at_the_threshold(models, tmp_path):
    path = tmp_path / "study.nii"
    nib.save(nib.Nifti1Image(brain(), np.eye(4)), path)
    first = score_source(str(path), models["volume"])
    scores = sorted(s["score"] for s in first["slices"] if s["score"] is not None)
    threshold = scores[len(scores) // 2]
    model = write_checkpoint(tmp_path / "at_median.safetensors", "volume", threshold=threshold)
    report = score_source(str(path), model)
    assert report["threshold"] == threshold
    at = [s for s in report["slices"] if s["score"] == threshold]
    assert at and all(s["normalized"] == 0.5 and not s["flagged"] for s in at)
    for s in report["slices"]:
        if s["score"] is not None:
            assert s["flagged"] == (s["score"] > threshold) == (s["normalized"] > 0.5)
    assert report["n_flagged"] == sum(s > threshold for s in scores) > 0
    assert report["study_flagged"] and report["study_normalized"] > 0.5


# ------------------------------------------------------------------------------- maps on the input grid

# voxel (i, j, k) -> world mm: LPS (axes flipped), and a permuted one (i -> S, j -> L, k -> P).
AFFINES = {
    "LPS": np.diag([-1.0, -1.0, 2.0, 1.0]),
    "SLP": np.array([[0, -1.0, 0, 20], [0, 0, -1.5, 30], [2.0, 0, 0, -5], [0, 0, 0, 1]]),
}


@pytest.mark.parametrize(("name", "slice_axis"), [("LPS", 2), ("SLP", 2), ("SLP", 0)])
def test_a_blob_at_input_voxels_comes_back_at_the_same_voxels(name, slice_axis, identity_detector, tmp_path):
    """Slice axis 0 cuts the RAS volume sagittally; in every case the square crop box leaves the slice on
    one side (zero padding), which the inverse must drop."""
    shape = (30, 36, 44)
    volume = np.zeros(shape, np.float32)
    tissue = (slice(4, 26), slice(5, 33), slice(6, 40))
    volume[tissue] = 100 + np.random.default_rng(1).normal(0, 5, (22, 28, 34))
    blob = (slice(7, 12), slice(24, 29), slice(9, 14))  # off-centre: a flip would move it
    volume[blob] = 1000.0
    path = tmp_path / f"{name}.nii.gz"
    nib.save(nib.Nifti1Image(volume, AFFINES[name]), path)

    model = write_checkpoint(tmp_path / "model.safetensors", "volume", slice_axis=slice_axis)
    report = score_source(str(path), model, out=tmp_path / "out")
    saved = np.load(tmp_path / "out" / "maps.npz")
    maps = saved["maps"]
    assert maps.shape == shape and maps.dtype == np.float32
    np.testing.assert_array_equal(saved["affine"], AFFINES[name])
    assert report["input"]["shape"] == list(shape) and report["input"]["orientation"] == name

    blob_mask = np.zeros(shape, bool)
    blob_mask[blob] = True
    hot = maps > 0.5
    assert hot[blob].all()  # every blob voxel
    assert hot.sum() <= 1.2 * blob_mask.sum()  # and little else
    assert blob_mask[np.unravel_index(np.argmax(maps), shape)]
    assert np.array_equal(np.flip(maps, axis=0)[blob] > 0.5, np.flip(blob_mask, 0)[blob])  # not mirrored
    # voxel by voxel, the map is the normalised input: its noise pattern lines up (a flip gives ~0)
    expected = normalize_percentiles(volume, foreground_mask(volume), 0.5, 99.5)
    inner = np.zeros(shape, bool)
    inner[5:25, 6:32, 7:39] = True
    inner[6:13, 23:30, 8:15] = False  # away from the tissue's and the blob's edges
    assert np.corrcoef(maps[inner], expected[inner])[0, 1] > 0.8
    assert np.abs(maps[inner] - expected[inner]).max() < 0.05
    assert (maps[tissue] > 0).all()
    grown = np.zeros(shape, bool)
    grown[3:27, 4:34, 5:41] = True  # bilinear resizing may spill one voxel
    assert not maps[~grown].any()

    axis = report["input"]["slice_axis"]
    assert len(saved["slice_scores"]) == shape[axis]
    for s in report["slices"]:
        plane = np.take(maps, s["input_index"], axis=axis)
        if s["score"] is None:
            assert not plane.any()
        else:
            assert s["score"] == pytest.approx(float(saved["slice_scores"][s["input_index"]]))


def test_overlays_show_the_flagged_slices_or_else_the_top_five(identity_detector, tmp_path):
    volume = brain()
    volume[20:24, 10:14, 5:8] = 1000.0  # slices 5-7 score 1.0 with the identity map, the others less
    path = tmp_path / "study.nii"
    nib.save(nib.Nifti1Image(volume, np.eye(4)), path)

    def shown(threshold: float) -> tuple[dict, list[int]]:
        model = write_checkpoint(tmp_path / f"t{threshold}.safetensors", "volume", threshold=threshold)
        report = score_source(str(path), model, out=tmp_path / f"out{threshold}")
        assert all(Path(p).is_file() for p in report["outputs"]["overlays"])
        return report, [int(Path(p).stem.split("_")[1]) for p in report["outputs"]["overlays"]]

    report, slices = shown(0.5)
    assert slices == [s["slice"] for s in report["slices"] if s["flagged"]] == [5, 6, 7]
    report, slices = shown(2.0)  # above every score: nothing flagged
    top = sorted((s for s in report["slices"] if s["score"] is not None), key=lambda s: -s["score"])[:5]
    assert report["n_flagged"] == 0 and slices == sorted(s["slice"] for s in top) and {5, 6, 7} <= set(slices)


def test_a_2d_image_map_has_the_image_height_and_width(models, identity_detector, tmp_path):
    image = np.full((50, 70), 40, np.uint8)
    image[30:40, 50:62] = 255
    path = tmp_path / "scan.png"
    Image.fromarray(image).save(path)
    report = score_source(str(path), models["image"], out=tmp_path / "out")
    assert report["kind"] == "image" and report["images"][0]["shape"] == [50, 70]
    maps = np.load(tmp_path / "out" / "maps.npz")["maps"]
    assert maps.shape == (50, 70)
    assert np.array_equal(maps > 0.6, image == 255)
    assert Path(report["images"][0]["outputs"]["overlay"]).is_file()


# -------------------------------------------------------------------------------------- more sources


def test_a_folder_of_images_is_scored_image_by_image(models, tmp_path, capsys):
    folder = tmp_path / "images"
    (folder / "more").mkdir(parents=True)
    rng = np.random.default_rng(2)
    sizes = {"a.png": (48, 64), "b.jpg": (60, 60), "more/c.bmp": (33, 41)}
    for name, size in sizes.items():
        Image.fromarray((rng.random(size) * 255).astype(np.uint8)).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, str(folder), "--model", str(models["image"]), "--out", str(out))
    assert code == 0, err
    report = strict_json(stdout)
    assert report["kind"] == "images" and report["n_images"] == 4 and report["n_scored"] == 3
    assert [e["name"] for e in report["errors"]] == ["broken.png"]
    entries = {e["name"]: e for e in report["images"]}
    assert set(entries) == set(sizes)
    assert report["n_flagged"] == sum(e["flagged"] for e in entries.values())
    for name, size in sizes.items():
        entry = entries[name]
        assert entry["flagged"] == (entry["score"] > report["threshold"])
        assert np.load(out / "maps" / f"{name}.npz")["maps"].shape == size
    overlays = sorted(p.relative_to(out / "overlays").as_posix() for p in (out / "overlays").rglob("*.png"))
    expected = [n for n, e in entries.items() if e["flagged"]] or list(entries)  # else the top 5
    assert overlays == sorted(f"{n}.png" for n in expected)


def test_a_list_of_images_with_the_same_file_name_keeps_both_maps(models, tmp_path, capsys):
    paths = []
    for folder, size in (("x", (20, 30)), ("y", (25, 35))):
        (tmp_path / folder).mkdir()
        paths.append(str(tmp_path / folder / "a.png"))
        Image.fromarray(np.full(size, 90, np.uint8)).save(paths[-1])
    code, stdout, err = run_cli(
        capsys, *paths, "--model", str(models["image"]), "--out", str(tmp_path / "out")
    )
    assert code == 0, err
    report = strict_json(stdout)
    assert report["kind"] == "images" and [e["name"] for e in report["images"]] == paths
    assert np.load(tmp_path / "out" / "maps" / "a.png.npz")["maps"].shape == (20, 30)
    assert np.load(tmp_path / "out" / "maps" / "a.png~2.npz")["maps"].shape == (25, 35)


def _dicom_series(folder: Path, stored: np.ndarray, iop, number: int, instances) -> str:
    from kdmed.io.synthetic import series_datasets, write_datasets

    datasets = series_datasets(
        stored, iop=iop, series_number=number, instance_numbers=instances, description=f"series {number}"
    )
    write_datasets(folder, datasets, prefix=f"S{number}_")
    return str(datasets[0].SeriesInstanceUID)


def test_a_dicom_folder_scores_the_default_series_and_names_it(models, identity_detector, tmp_path):
    stored = np.zeros((12, 36, 40), np.int16)  # (slice, row, column)
    stored[2:10, 4:30, 6:34] = 100
    stored[5:8, 20:25, 9:13] = 1000
    folder = tmp_path / "dicom"
    instances = [7, 3, 11, 1, 9, 5, 12, 2, 10, 4, 8, 6]  # shuffled on purpose
    axial = _dicom_series(folder, stored, (1, 0, 0, 0, 1, 0), 3, instances)
    coronal = _dicom_series(folder, stored[:4], (1, 0, 0, 0, 0, -1), 5, None)

    report = score_source(str(folder), models["volume"], out=tmp_path / "out")
    series = report["input"]["series"]
    assert (series["uid"], series["number"]) == (axial, 3)
    assert sorted(s["uid"] for s in report["input"]["available_series"]) == sorted([axial, coronal])
    assert any("2 series found" in w for w in report["input"]["warnings"])
    assert [
        s["instance_number"] for s in sorted(report["slices"], key=lambda s: s["input_index"])
    ] == instances
    maps = np.load(tmp_path / "out" / "maps.npz")["maps"]
    assert maps.shape == (40, 36, 12)  # (column, row, slice in position order)
    hot = np.argwhere(maps > 0.5)
    assert hot.size and (hot.min(0) >= [9, 20, 5]).all() and (hot.max(0) <= [12, 24, 7]).all()

    chosen = score_source(str(folder), models["volume"], series_uid=coronal)
    assert chosen["input"]["series"]["uid"] == coronal and chosen["input"]["shape"] == [40, 36, 4]
    assert chosen["input"]["slice_axis"] == 1 and chosen["n_slices"] == 36  # axial slices cut its rows
    assert all("instance_number" not in s for s in chosen["slices"])


@pytest.mark.slow
@pytest.mark.realdata
def test_real_dicom_series_and_its_dcm2niix_nifti_give_the_same_maps(models, shared_data, tmp_path):
    root = shared_data / "dicom" / "dcm_qa_nih"
    if not root.is_dir():
        pytest.skip(f"{root} is absent")
    reference = next(
        p.with_suffix(".nii")
        for p in sorted((root / "Ref").glob("*.json"))
        if (m := json.loads(p.read_text()))["Manufacturer"].startswith("GE") and m["SeriesNumber"] == 4
    )
    from_dicom = score_source(str(root / "In" / "20180918GE"), models["volume"], out=tmp_path / "dicom")
    from_nifti = score_source(str(reference), models["volume"], out=tmp_path / "nifti")
    assert from_dicom["input"]["series"]["number"] == 4 and len(from_dicom["input"]["available_series"]) == 4
    assert [s["score"] for s in from_dicom["slices"]] == pytest.approx(
        [s["score"] for s in from_nifti["slices"]]
    )
    canonical = []
    for name in ("dicom", "nifti"):
        saved = np.load(tmp_path / name / "maps.npz")
        canonical.append(nib.as_closest_canonical(nib.Nifti1Image(saved["maps"], saved["affine"])))
    assert from_nifti["input"]["shape"] == list(nib.load(reference).shape[:3])
    np.testing.assert_allclose(canonical[0].get_fdata(), canonical[1].get_fdata(), atol=1e-5)
    np.testing.assert_allclose(canonical[0].affine, canonical[1].affine, atol=1e-3)


# ------------------------------------------------------------------------------------------------ errors


def _png(path: Path) -> Path:
    Image.fromarray(np.full((20, 30), 128, np.uint8)).save(path)
    return path


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing source", "no such file or folder"),
        ("corrupt gzip", "corrupt or truncated"),
        ("truncated nifti", "cannot be read"),
        ("image for a volume model", "scores 3D volumes"),
        ("image folder for a volume model", "scores 3D volumes"),
        ("missing checkpoint", "does not exist"),
        ("corrupt checkpoint", "is not a kdmed checkpoint"),
        ("bad batch size", "--batch-size"),
    ],
)
def test_bad_input_is_one_line_with_exit_code_2(case, expected, models, tmp_path, capsys):
    model, source, extra = str(models["volume"]), str(tmp_path / "missing.nii.gz"), []
    if case == "corrupt gzip":
        source = str(tmp_path / "broken.nii.gz")
        Path(source).write_bytes(b"\x1f\x8b\x08\x00garbage")
    elif case == "truncated nifti":
        source = str(tmp_path / "truncated.nii")
        Path(source).write_bytes(nib.Nifti1Image(brain(), np.eye(4)).to_bytes()[:600])
    elif case == "image for a volume model":
        source = str(_png(tmp_path / "scan.png"))
    elif case == "image folder for a volume model":
        (tmp_path / "pngs").mkdir()
        _png(tmp_path / "pngs" / "a.png")
        _png(tmp_path / "pngs" / "b.png")
        source = str(tmp_path / "pngs")
    elif case in ("missing checkpoint", "corrupt checkpoint"):
        source = str(tmp_path / "v.nii")
        nib.save(nib.Nifti1Image(brain(), np.eye(4)), source)
        model = str(tmp_path / "model.safetensors")
        if case == "corrupt checkpoint":
            Path(model).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    elif case == "bad batch size":
        extra = ["--batch-size", "0"]
    code, out, err = run_cli(capsys, source, "--model", model, *extra)
    assert code == 2 and out == ""
    assert err.startswith("kdmed score: error: ") and err.count("\n") == 1, err
    assert expected in err and "Traceback" not in err


def test_the_source_is_read_once(models, tmp_path, monkeypatch):
    """`kdmed score` takes the input grid from the loaded `Study`: the file is collected and decoded once."""
    import kdmed.io.load
    import kdmed.io.nifti

    path = tmp_path / "study.nii.gz"
    nib.save(nib.Nifti1Image(brain(), np.diag([-1.0, 1.0, 2.0, 1.0])), path)
    collected, decoded = [], []
    real_collect, real_read = kdmed.io.load.collect, kdmed.io.nifti._read_volume
    monkeypatch.setattr(kdmed.io.load, "collect", lambda *a: collected.append(1) or real_collect(*a))
    monkeypatch.setattr(kdmed.io.nifti, "_read_volume", lambda *a: decoded.append(1) or real_read(*a))
    report = score_source(str(path), models["volume"], out=tmp_path / "out")
    assert len(collected) == 1 and len(decoded) == 1
    assert report["input"]["shape"] == list(brain().shape) and report["input"]["orientation"] == "LAS"
