"""The `localize` stage: every map type against the masks (`stage`, `table`, `panel`), and the cost of
each Captum attribution (`benchmark`); the attributions themselves live beside MKD in `kdmed.models`."""
