"""`kdmed` console command: every stage listed, user errors reported in one line with exit code 2."""

from __future__ import annotations

import json

import pytest

from kdmed.cli import main


def test_help_lists_every_stage(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("demo-data", "preprocess", "train", "evaluate", "summary", "inspect"):
        assert command in out


def test_bad_params_exit_2_with_the_key_named(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text("common: {image_size: 100}\n")
    assert main(["--params", str(params), "preprocess", "--dataset", "brain"]) == 2
    err = capsys.readouterr().err
    assert "common.image_size" in err and "Traceback" not in err


def test_inspect_prints_json_for_a_nifti(tmp_path, capsys):
    import nibabel as nib
    import numpy as np

    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 5, 6), np.float32), np.eye(4)), path)
    assert main(["inspect", str(path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["shape"] == [4, 5, 6]


def test_inspect_of_a_non_study_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "notes.txt"
    path.write_text("not an image")
    assert main(["inspect", str(path)]) == 2
    assert "error" in capsys.readouterr().err


def test_python_dash_m_kdmed_is_the_kdmed_command(tmp_path):
    import subprocess
    import sys

    params = tmp_path / "params.yaml"
    params.write_text("common: {image_size: 100}\n")
    done = subprocess.run(
        [sys.executable, "-m", "kdmed", "--params", str(params), "summary"], capture_output=True, text=True
    )
    assert done.returncode == 2 and "common.image_size" in done.stderr and "Traceback" not in done.stderr
