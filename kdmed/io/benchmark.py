"""Time `load_study` on a BraTS-sized NIfTI and on a 150-file DICOM series (not a test).

    python -m kdmed.io.benchmark [--nifti PATH] [--rows 512] [--repeats 3]

The NIfTI defaults to the BraTS 2015 FLAIR in `<repo>/../shared/data` (or `$KDMED_SHARED_DATA`); without
it, a synthetic 240x240x155 float32 volume is written to a temporary folder. The DICOM series is always
synthesised (150 slices, shuffled file order), then RLE-compressed and timed with compressed pixel data
decoded in the isolated decoder process (the default) and in the calling process: the ratio is what the
isolation costs (issue 14). Target: under 2 s each on a laptop-class CPU.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from pydicom.uid import RLELossless

from kdmed.io import load_study
from kdmed.io.decoder_process import DECODER
from kdmed.io.limits import ReadLimits
from kdmed.io.synthetic import series_datasets, write_datasets

_BRATS = "brats2015/brats_2013_pat0003_1/Flair_subtrMeanDivStd.nii.gz"


def shared_data() -> Path:
    env = os.environ.get("KDMED_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _time(label: str, source: object, repeats: int, limits: ReadLimits | None = None) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        study = load_study(source, limits=limits)
        best = min(best, time.perf_counter() - start)
    print(f"{label}: best of {repeats} = {best:.3f} s -> {study}")
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nifti", type=Path, default=None, help="NIfTI file to time (default: BraTS FLAIR)")
    parser.add_argument("--rows", type=int, default=512, help="rows = columns of each synthetic slice")
    parser.add_argument("--slices", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kdmed-bench-") as tmp:
        nifti = args.nifti or shared_data() / _BRATS
        if not nifti.is_file():
            nifti = Path(tmp) / "synthetic_240x240x155.nii.gz"
            data = np.random.default_rng(0).normal(size=(240, 240, 155)).astype(np.float32)
            nib.save(nib.Nifti1Image(data, np.diag([-1.0, -1.0, 1.0, 1.0])), nifti)
        _time(f"NIfTI {nifti.name}", nifti, args.repeats)

        shape = (args.slices, args.rows, args.rows)
        stored = np.random.default_rng(0).integers(0, 4096, shape, dtype=np.uint16)
        datasets = series_datasets(stored, pixel_spacing=(0.7, 0.7), slope=1.0, intercept=-1024.0)
        random.Random(0).shuffle(datasets)
        folder = Path(tmp) / "dicom"
        write_datasets(folder, datasets)
        _time(f"DICOM {args.slices} files of {args.rows}x{args.rows}", folder, args.repeats)

        # the same series RLE-compressed: decoded in the isolated decoder process (the default) and in
        # this process, to measure what the isolation costs
        for ds in datasets:
            ds.compress(RLELossless)
        rle = Path(tmp) / "dicom_rle"
        write_datasets(rle, datasets)
        DECODER.warm(ReadLimits().decoder_memory_bytes)  # a one-off start-up, not a per-file cost
        label = f"DICOM RLE {args.slices} files"
        isolated = _time(f"{label}, decoder process", rle, args.repeats)
        inline = _time(f"{label}, in process", rle, args.repeats, ReadLimits(isolate_decoders=False))
        print(
            f"isolation overhead: {isolated / inline:.2f}x ({(isolated - inline) / args.slices * 1e3:.1f} ms per file)"
        )


if __name__ == "__main__":
    main()
