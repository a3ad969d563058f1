"""`kdmed score-archive` on a real 2-worker Dask LocalCluster: one row per study through `kdmed score`'s
path, bad studies recorded and never fatal, resumable, no paths (PHI) unless asked."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from fake_models import nifti_bytes, write_checkpoint

from kdmed.archive import find_studies, score_archive
from kdmed.archive.discover import study_id
from kdmed.cli import main
from kdmed.errors import KdmedError
from kdmed.score import score_source


def _archive(root: Path) -> Path:
    archive = root / "archive"
    (archive / "site-a" / "Doe^John").mkdir(parents=True)
    (archive / "site-b").mkdir(parents=True)
    (archive / "site-a" / "Doe^John" / "flair.nii").write_bytes(nifti_bytes())
    (archive / "site-a" / "second.nii.gz").write_bytes(gzip.compress(nifti_bytes((40, 40, 10))))
    (archive / "site-b" / "third.nii").write_bytes(nifti_bytes((36, 44, 12)))
    (archive / "site-b" / "truncated.nii").write_bytes(nifti_bytes()[:900])  # header, no voxels
    (archive / "site-b" / "garbage.nii.gz").write_bytes(b"\x1f\x8b" + b"not gzip at all" * 10)
    (archive / "site-b" / "notes.txt").write_text("not a study")
    return archive


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    root = tmp_path_factory.mktemp("archive")
    archive, model = _archive(root), write_checkpoint(root / "model.safetensors", "volume")
    summary = score_archive(archive, model, root / "out", workers=2, progress=False)
    return archive, model, root / "out", summary


def _rows(out: Path) -> dict[str, dict[str, str]]:
    with (out / "results.csv").open(newline="") as handle:
        return {row["study"]: row for row in csv.DictReader(handle)}


def test_finds_studies_by_content_and_skips_the_rest(tmp_path):
    archive = _archive(tmp_path)
    studies, skipped = find_studies(archive)
    names = sorted(s.path.name for s in studies)
    assert names == ["flair.nii", "garbage.nii.gz", "second.nii.gz", "third.nii", "truncated.nii"]
    assert skipped == 1  # notes.txt
    assert len({s.study for s in studies}) == len(studies)
    assert {s.study for s in studies} == {study_id(s.path.relative_to(archive).as_posix()) for s in studies}


def test_every_study_gets_one_row_and_bad_ones_an_error(scored):
    archive, model, out, summary = scored
    assert summary["studies"] == 5 and summary["scored_now"] == 3 and summary["failed_now"] == 2
    rows = _rows(out)
    by_name = {s.path.name: rows[s.study] for s in find_studies(archive)[0]}
    assert by_name["truncated.nii"]["verdict"] == "error" and by_name["truncated.nii"]["error"]
    assert "gzip" in by_name["garbage.nii.gz"]["error"].lower()
    good = by_name["flair.nii"]
    assert good["verdict"] in ("flagged", "normal") and not good["error"]
    # the same numbers as `kdmed score` on that study
    report = score_source(archive / "site-a" / "Doe^John" / "flair.nii", model)
    assert float(good["study_score"]) == pytest.approx(report["study_score"], rel=1e-6)
    assert int(good["n_flagged"]) == report["n_flagged"] and int(good["n_scored"]) == report["n_scored"]
    assert good["verdict"] == ("flagged" if report["study_flagged"] else "normal")
    assert good["out_of_distribution"] == "unchecked"  # the fake model has no training-input profile


def test_no_paths_in_the_table_unless_asked(scored):
    _, _, out, _ = scored
    text = (out / "results.csv").read_text()
    assert "Doe^John" not in text and "site-a" not in text and "source" not in text.splitlines()[0]


def test_resumes_without_scoring_twice(scored):
    archive, model, out, _ = scored
    again = score_archive(archive, model, out, workers=2, progress=False)
    assert again["already_done"] == 5 and again["scored_now"] == 0 and again["failed_now"] == 0
    rows = _rows(out)
    dropped = next(r for r in rows.values() if not r["error"])
    keep = [r for r in rows.values() if r is not dropped]
    with (out / "results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(dropped))
        writer.writeheader()
        writer.writerows(keep)
    resumed = score_archive(archive, model, out, workers=1, progress=False)
    assert resumed["already_done"] == 4 and resumed["scored_now"] == 1
    assert _rows(out)[dropped["study"]]["study_score"] == dropped["study_score"]
    retried = score_archive(archive, model, out, workers=1, retry_errors=True, progress=False)
    assert retried["already_done"] == 3 and retried["failed_now"] == 2


@pytest.mark.slow
def test_cli_with_a_manifest_and_paths_asked_for(scored, tmp_path, capsys):
    archive, model, _, _ = scored
    manifest = tmp_path / "list.txt"
    manifest.write_text(f"{archive / 'site-b' / 'third.nii'}\n# a comment\n\nsite-b/truncated.nii\n")
    (tmp_path / "site-b").symlink_to(archive / "site-b")
    code = main(["score-archive", str(manifest), "--model", str(model), "--out", str(tmp_path / "o"),
                 "--workers", "1", "--include-paths", "--no-progress"])  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["studies"] == 2 and summary["scored_now"] == 1 and summary["failed_now"] == 1
    rows = sorted(_rows(tmp_path / "o").values(), key=lambda r: r["source"])
    assert rows[0]["source"].endswith("third.nii") and rows[0]["verdict"] in ("flagged", "normal")
    assert rows[1]["source"].endswith("truncated.nii") and rows[1]["verdict"] == "error"
    assert np.isfinite(float(rows[0]["seconds"]))


def test_clear_errors(scored, tmp_path, capsys):
    _, model, _, _ = scored
    assert (
        main(["score-archive", str(tmp_path / "nowhere"), "--model", str(model), "--out", str(tmp_path)]) == 2
    )
    assert "neither a folder nor a manifest" in capsys.readouterr().err
    bad_manifest = tmp_path / "m.csv"
    bad_manifest.write_text("path\nmissing/study.nii\n")
    with pytest.raises(KdmedError, match="line 2: missing/study.nii does not exist"):
        find_studies(bad_manifest)
    assert (
        main(
            [
                "score-archive",
                str(tmp_path),
                "--model",
                str(tmp_path / "no.safetensors"),
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
