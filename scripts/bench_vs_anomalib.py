"""Inference throughput at 256 px on this CPU: kdmed (torch, ONNX Runtime, OpenVINO) against anomalib, same run.

    python scripts/bench_vs_anomalib.py                 # STPM ResNet-18 and RD4AD Wide-ResNet-50-2
    python scripts/bench_vs_anomalib.py --rounds 5 --batch 8 --threads 2

anomalib 2.7 lives in its own venv (`.bench/anomalib-venv`, made on first use with pip; torch and
torchvision are the versions of this project's constraints). Both sides run as long-lived worker
processes that time one round each in turn (kdmed torch, kdmed onnx, anomalib, then again), so a busier
machine slows all of them alike; the median round per side is reported with the ratio. Weights are
random on both sides (speed does not depend on them; neither side may download at run time). Both score
what a user gets: anomaly maps at the input size and image scores, eval mode, fp32, no gradient.
kdmed runs five ways: plain torch, torch with BatchNorm folded and channels_last
(`kdmed.runtimes.torch_fold`), ONNX Runtime (`kdmed.runtimes.onnx_detector`), and OpenVINO in fp32 and
in bf16 (`kdmed.runtimes.openvino_detector`; bf16 is a reduced precision, checked for accuracy by
`scripts/check_runtime.py openvino-bf16`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / ".bench"
ANOMALIB_VENV = BENCH / "anomalib-venv"
ANOMALIB_VERSION = "2.7.0"

# Each worker reads a command per line ("round") and answers one JSON line with the seconds it took.
KDMED_WORKER = r"""
import json, sys, time, torch
torch.set_num_threads(int(sys.argv[3]))
from kdmed.config import Rd4adConfig, StpmConfig
from kdmed.models.rd4ad import RD4AD
from kdmed.models.stpm import STPM
from kdmed.runtimes.onnx_export import export
from kdmed.runtimes.onnx_detector import OnnxDetector
method, runtime, threads, batch, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
if method == "stpm":
    model = STPM(StpmConfig(backbone="resnet18", weights="random"), teacher_weights="random")
else:
    model = RD4AD(Rd4adConfig(backbone="wide_resnet50_2", weights="random"), teacher_weights="random")
model.eval()
x = torch.rand(batch, 3, size, size)
if runtime == "onnx":
    path = sys.argv[6]
    export(model, path, size)
    model = OnnxDetector(model, path, threads)
elif runtime.startswith("openvino"):
    from kdmed.runtimes.openvino_detector import OpenVinoDetector
    path = sys.argv[6]
    export(model, path, size)
    model = OpenVinoDetector(model, path, threads, "bf16" if runtime.endswith("bf16") else "f32")
elif runtime == "torch-fold":
    from kdmed.runtimes.torch_fold import for_inference
    model = for_inference(model, 64)
    x = x.contiguous(memory_format=torch.channels_last)
with torch.no_grad():
    model.predict(x)  # warm-up
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        started = time.perf_counter()
        p = model.predict(x)
        assert p.maps.shape == (batch, size, size)
        print(json.dumps({"seconds": time.perf_counter() - started}), flush=True)
"""

ANOMALIB_WORKER = r"""
import json, sys, time, torch
torch.set_num_threads(int(sys.argv[2]))
import timm
_create = timm.create_model
def offline(*args, **kwargs):  # random weights: nothing may be downloaded
    kwargs["pretrained"] = False
    return _create(*args, **kwargs)
timm.create_model = offline
import anomalib.models.components.feature_extractors.timm as fx
fx.timm.create_model = offline
method, threads, batch, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
if method == "stpm":
    from anomalib.models.image.stfpm.torch_model import STFPMModel
    model = STFPMModel(layers=["layer1", "layer2", "layer3"], backbone="resnet18")
else:
    from anomalib.models.image.reverse_distillation.torch_model import ReverseDistillationModel
    from anomalib.models.image.reverse_distillation.anomaly_map import AnomalyMapGenerationMode
    model = ReverseDistillationModel(backbone="wide_resnet50_2", input_size=(size, size),
        layers=["layer1", "layer2", "layer3"], anomaly_map_mode=AnomalyMapGenerationMode.ADD, pre_trained=False)
model.eval()
x = torch.rand(batch, 3, size, size)
with torch.no_grad():
    model(x)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        started = time.perf_counter()
        out = model(x)
        assert out.anomaly_map.shape[-2:] == (size, size)
        print(json.dumps({"seconds": time.perf_counter() - started}), flush=True)
"""


def anomalib_python() -> Path:
    python = ANOMALIB_VENV / "bin" / "python"
    if not (ANOMALIB_VENV / ".installed").is_file():
        print(
            f"making {ANOMALIB_VENV} with anomalib {ANOMALIB_VERSION} (once; a few minutes)", file=sys.stderr
        )
        venv.create(ANOMALIB_VENV, with_pip=True)
        pins = {}
        for line in (REPO / "constraints.txt").read_text().splitlines():
            if "==" in line:
                name, version = line.split("==", 1)
                pins[name.strip().lower()] = version.strip()
        packages = [
            f"anomalib=={ANOMALIB_VERSION}",
            f"torch=={pins['torch']}",
            f"torchvision=={pins['torchvision']}",
        ]
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *packages], check=True)
        (ANOMALIB_VENV / ".installed").write_text(ANOMALIB_VERSION)
    return python


class Worker:
    def __init__(self, name: str, command: list[str]) -> None:
        self.name = name
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        ready = self.process.stdout.readline()
        if not ready:
            raise SystemExit(f"{name} did not start (see its error above)")
        self.seconds: list[float] = []

    def round(self) -> None:
        self.process.stdin.write("round\n")
        self.process.stdin.flush()
        self.seconds.append(json.loads(self.process.stdout.readline())["seconds"])

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--methods", nargs="+", default=["stpm", "rd4ad"], choices=["stpm", "rd4ad"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--openvino",
        nargs="*",
        default=["openvino", "openvino-bf16"],
        choices=["openvino", "openvino-bf16"],
        help="OpenVINO runtimes to add (needs the openvino package; bf16 needs AVX512-BF16 or AMX)",
    )
    parser.add_argument("--out", type=Path, default=BENCH / "vs_anomalib.json")
    args = parser.parse_args()
    python = anomalib_python()
    BENCH.mkdir(exist_ok=True)
    results = {}
    for method in args.methods:
        common = [str(args.threads), str(args.batch), str(args.size)]
        workers = [
            Worker("kdmed torch", [sys.executable, "-c", KDMED_WORKER, method, "torch", *common]),
            Worker("kdmed torch-fold", [sys.executable, "-c", KDMED_WORKER, method, "torch-fold", *common]),
            Worker(
                "kdmed onnx",
                [sys.executable, "-c", KDMED_WORKER, method, "onnx", *common, str(BENCH / f"{method}.onnx")],
            ),
            *[
                Worker(
                    f"kdmed {runtime}",
                    [
                        sys.executable,
                        "-c",
                        KDMED_WORKER,
                        method,
                        runtime,
                        *common,
                        str(BENCH / f"{method}.onnx"),
                    ],
                )
                for runtime in args.openvino
            ],
            Worker(f"anomalib {ANOMALIB_VERSION}", [str(python), "-c", ANOMALIB_WORKER, method, *common]),
        ]  # one at a time: each waits idle while another runs its round
        for _ in range(args.rounds):
            for worker in workers:
                worker.round()
        for worker in workers:
            worker.close()
        rates = {w.name: args.batch / statistics.median(w.seconds) for w in workers}
        base = rates[f"anomalib {ANOMALIB_VERSION}"]
        results[method] = {
            name: {"images_per_s": round(rate, 2), "x_anomalib": round(rate / base, 2)}
            for name, rate in rates.items()
        }
        for name, row in results[method].items():
            print(
                f"{method:6s} {name:16s} {row['images_per_s']:7.2f} img/s  {row['x_anomalib']:.2f}x anomalib"
            )
    settings = {"batch": args.batch, "size": args.size, "threads": args.threads, "rounds": args.rounds}
    args.out.write_text(json.dumps({"settings": settings, "results": results}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
