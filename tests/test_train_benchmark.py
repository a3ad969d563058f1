"""The training benchmark runs every method and reports speed and memory (the figures are not asserted)."""

from __future__ import annotations

import json

import pytest
import torch

from kdmed.train_benchmark import main


@pytest.mark.slow
def test_benchmark_prints_one_record_per_method(capsys):
    main(
        [
            "--methods",
            "stpm",
            "rd4ad",
            "mkd",
            "--backbone",
            "resnet18",
            "--weights",
            "random",
            "--image-size",
            "64",
            "--batch-size",
            "2",
            "--steps",
            "4",
            "--steps-per-epoch",
            "2",
            "--device",
            "cpu",
        ]
    )
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [r["method"] for r in records] == ["stpm", "rd4ad", "mkd"]
    for record in records:
        assert record["images_per_s"] > 0 and record["peak_process_rss_mib"] > 0
        assert record["steps"] == 4 and record["precision"] == "float32"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_every_method_trains_on_cuda_with_mixed_precision(capsys):
    main(
        [
            "--methods",
            "stpm",
            "rd4ad",
            "mkd",
            "--paper-backbones",
            "--weights",
            "random",
            "--image-size",
            "128",
            "--steps",
            "4",
            "--steps-per-epoch",
            "2",
            "--device",
            "cuda",
        ]
    )
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(records) == 3
    assert all(r["precision"] in ("torch.bfloat16", "torch.float16") for r in records)
    assert all(r["peak_gpu_memory_mib"] > 0 for r in records)
