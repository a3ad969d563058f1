"""Published medical numbers to compare against: the BMAD benchmark (Bao et al., 2024), mean over seeds, in
percent (see ../shared/REFERENCE.md). BMAD trained on thousands of normals at 224 px with ImageNet
teachers; its BraTS numbers are BraTS 2021 (axial FLAIR slices 60..99), and its PRO for RD4AD and STPM
comes from an AUPRO that divides by the last kept FPR instead of 0.3 (inflated)."""

from __future__ import annotations

# DatasetConfig.published -> method -> (image AUROC, pixel AUROC, PRO); None where BMAD reports no number
BMAD: dict[str, dict[str, tuple[float | None, float | None, float | None]]] = {
    "brats": {"mkd": (81.5, 89.4, 67.6), "rd4ad": (89.5, 96.5, 85.9), "stpm": (83.0, 95.6, 83.0)},
    "oct2017": {"mkd": (96.7, None, None), "rd4ad": (97.3, None, None), "stpm": (96.8, None, None)},
}

BMAD_NOTE = (
    "BMAD: Bao et al. 2024, mean over seeds; brats = BraTS 2021 FLAIR slices 60..99, PRO divided by the "
    "last FPR (inflated) for RD4AD and STPM; oct2017 = image AUROC on the full OCT2017 (26,315 training normals)."
)


def bmad_numbers(benchmark: str, method: str) -> tuple[float | None, float | None, float | None] | None:
    return BMAD.get(benchmark, {}).get(method)


# MKD (Salehi et al., CVPR 2021, Table 8): MVTec AD pixel AUROC of the gradient maps with the Gaussian blur.
MKD_MVTEC_PIXEL_AUROC: dict[str, float] = {"saliency": 90.5, "smoothgrad": 90.5, "guided_backprop": 90.1}
