"""A tiny params.yaml for the demo brain volumes, shared by the fixtures and the tests that need their own."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def tiny_brain_params(root: Path, common_size: int = 96, **brain: object) -> Path:
    """params.yaml for the demo brain volumes under `root/demo`, outputs under `root`: the real file with
    one tiny `brain` dataset (its settings updated by `brain`), short training, small localisation."""
    data = yaml.safe_load((REPO / "params.yaml").read_text())
    data["common"]["image_size"] = common_size
    data["datasets"] = {
        "brain": {
            "adapter": "brats",
            "root": str(root / "demo" / "brain"),
            "slice_range": [8, 32],
            "min_foreground_pixels": 200,
            "split": {"train": 0.45, "val": 0.15, "test": 0.4},
            **brain,
        }
    }
    data["pipeline"]["datasets"] = ["brain"]
    data["method_overrides"] = {"brain": {}}
    data["preprocess"]["out_dir"] = str(root / "processed")
    data["train"].update(out_dir=str(root / "models"), epochs=2, steps=0, validate_every=1, resume=False)
    data["evaluate"]["out_dir"] = str(root / "reports")
    data["localize"].update(datasets=["brain"], out_dir=str(root / "reports"), max_images=12, batch_size=4)
    data["methods"]["stpm"]["batch_size"] = 8
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path
