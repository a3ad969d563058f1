"""kdmed: knowledge-distillation anomaly detection for medical screening (STPM, RD4AD, MKD)."""

__version__ = "0.1.0"
