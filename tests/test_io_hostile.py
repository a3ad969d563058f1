"""Hostile inputs (issue 14): every reproducer of the outside fuzzing run, and a generated fuzz corpus,
load or fail with a `KdmedError` that names the field, within a time bound, in `load_study`, in
`kdmed score` (exit code 2, one line) and in the review app (which keeps working afterwards).

The reproducers run in this very process on purpose: the GDCM abort and the pylibjpeg-rle panic among them
would take pytest down if compressed pixel data were not decoded in the isolated decoder process.
"""

from __future__ import annotations

import io
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest
from fake_models import nifti_bytes, write_checkpoint
from pydicom.uid import RLELossless

from kdmed.cli import main
from kdmed.errors import KdmedError
from kdmed.io import load_study
from kdmed.io.decoder_process import DECODER, decode_isolated
from kdmed.io.fuzz import BAD, cases, run, table
from kdmed.io.fuzz_seeds import synthetic_seeds
from kdmed.io.guard import UnexpectedReaderError
from kdmed.io.hostile_files import REPRODUCERS, build
from kdmed.io.limits import ReadLimits

SECONDS = 20.0  # generous for a loaded 2-core CI machine; every case takes well under 1 s when idle


@pytest.mark.parametrize("name", list(REPRODUCERS))
def test_each_reproducer_is_refused_with_its_field_named(name):
    file_name, data = build(name)
    started = time.perf_counter()
    with pytest.raises(KdmedError) as info:
        load_study([(file_name, data)])
    assert time.perf_counter() - started < SECONDS
    assert not isinstance(info.value, UnexpectedReaderError), info.value
    message = str(info.value)
    assert message.startswith(file_name) and REPRODUCERS[name][2] in message, message


def test_a_crashed_decoder_is_replaced_and_decodes_the_next_file():
    with pytest.raises(KdmedError, match="crashed"):
        load_study([build("jpegls_wide")])
    good = next(seed for seed in synthetic_seeds() if seed.name == "jpegls.dcm")
    study = load_study([(good.name, good.data)])
    assert study.array.shape == (64, 64, 1)


def test_in_process_decoding_gives_the_same_pixels_as_the_decoder_process():
    for seed in synthetic_seeds():
        if seed.name in ("rle.dcm", "jpegls.dcm", "j2k.dcm", "jpeg_baseline.dcm"):
            isolated = load_study([(seed.name, seed.data)]).array
            inline = load_study([(seed.name, seed.data)], limits=ReadLimits(isolate_decoders=False)).array
            np.testing.assert_array_equal(isolated, inline)


def test_a_decoder_over_its_time_limit_is_stopped_and_replaced():
    rle = next(seed for seed in synthetic_seeds() if seed.name == "rle.dcm")
    memory = ReadLimits().decoder_memory_bytes
    DECODER.warm(memory)
    with pytest.raises(
        KdmedError, match=r"rle.dcm: decoding its RLE Lossless pixel data did not finish within"
    ):
        decode_isolated(
            rle.name, pydicom.dcmread(io.BytesIO(rle.data)), syntax_uid=RLELossless, syntax_name=RLELossless.name,
            seconds=0.0, memory_bytes=memory,  # the deadline has passed when the answer is awaited
        )  # fmt: skip
    assert load_study([(rle.name, rle.data)]).array.shape == (64, 64, 1)


def test_the_generated_fuzz_corpus_loads_or_is_refused_within_the_bound():
    """300 deterministic mutations of the generated seeds, each in a sandbox with a 4 GiB cap."""
    results = run(cases(synthetic_seeds(), seed=0), max_cases=300, timeout_s=SECONDS)
    assert len(results) == 300
    counts = Counter(r.outcome for r in results)
    bad = [f"{r.case.name} ({r.case.label}): {r.outcome} {r.detail}" for r in results if r.outcome in BAD]
    assert not bad, table(results) + "\n" + "\n".join(bad[:10])
    assert counts["loaded"] > 30 and counts["refused"] > 100, counts  # the corpus exercises both paths


@pytest.fixture(scope="module")
def volume_model(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("models") / "volume.safetensors", "volume")


@pytest.mark.parametrize("name", list(REPRODUCERS))
def test_kdmed_score_reports_each_reproducer_in_one_line_with_exit_2(name, volume_model, tmp_path, capsys):
    file_name, data = build(name)
    path = tmp_path / file_name
    path.write_bytes(data)
    code = main(["score", str(path), "--model", str(volume_model), "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 2
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and REPRODUCERS[name][2] in lines[0], captured.err
    assert "Traceback" not in captured.err + captured.out


@pytest.mark.slow
def test_the_app_shows_each_reproducer_as_a_message_and_keeps_working(monkeypatch, tmp_path):
    from test_app import start, upload

    write_checkpoint(tmp_path / "demo" / "stpm" / "model.safetensors", "volume")
    app = start(monkeypatch, tmp_path)
    for name in REPRODUCERS:
        upload(app, [build(name)])
        assert app.error and "cannot be scored" in app.error[0].value, name
        assert REPRODUCERS[name][2] in app.error[0].value, (name, app.error[0].value)
    upload(app, [("study.nii", nifti_bytes())])
    assert not app.error and "slices flagged" in app.subheader[0].value
