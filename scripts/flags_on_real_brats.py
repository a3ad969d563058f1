# python scripts/flags_on_real_brats.py MODEL.safetensors [...]: one JSON line per model and volume.
"""What a model flags on every real BraTS FLAIR volume (2015 + 2018), through `kdmed score`'s path:
slices scored / outside the policy / flagged, tumour slices among the scored, study verdict."""

import json
import sys
from pathlib import Path

import numpy as np

from kdmed.checkpoint import load_checkpoint
from kdmed.contract import SCORED
from kdmed.inference import score_study
from kdmed.io import load_study

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data beside the checkout
cases = [
    (p.name, p / "Flair_subtrMeanDivStd.nii.gz", p / "OTMultiClass.nii.gz")
    for p in sorted((DATA / "brats2015").glob("brats_*"))
]
cases += [
    (p.name, p / "FLAIR.nii.gz", p / "GT_W.nii.gz") for p in sorted((DATA / "brats2018").glob("Brats18_*"))
]
rows = []
for model in sys.argv[1:]:
    checkpoint = load_checkpoint(model)
    for name, flair, seg in cases:
        result = score_study(checkpoint, load_study(str(flair)))
        tumour = load_study(str(seg)).array > 0
        axis = result.geometry.axis
        lesion = [bool(np.take(tumour, k, axis=axis).any()) for k in result.slice_indices]
        scored = np.array([s == SCORED for s in result.status])
        flagged = result.flagged
        les = np.array(lesion)
        rows.append(
            {
                "model": f"{checkpoint.header.card.dataset}/{checkpoint.method}",
                "case": name,
                "slices": len(scored),
                "scored": int(scored.sum()),
                "flagged": int(flagged.sum()),
                "tumour_scored": int((les & scored).sum()),
                "tumour_flagged": int((les & flagged).sum()),
                "normal_scored": int((~les & scored).sum()),
                "normal_flagged": int((~les & flagged).sum()),
                "flagged_outside_policy": int((flagged & ~scored).sum()),
                "study_flagged": result.study_flagged,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
