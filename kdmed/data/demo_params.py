"""The `demo_data` section of params.yaml turned into the generator's `DemoSpec` (kdmed.data.demo).

The config layer keeps the section as plain settings (it imports no data module); this is where they are
checked, key by key, against the generator's own spec: an unknown key or a wrong value names
`demo_data.<domain>.<key>`.
"""

from __future__ import annotations

from kdmed.config import DemoDataConfig
from kdmed.config_schema import build, to_plain
from kdmed.data.demo import DemoSpec


def demo_spec(config: DemoDataConfig) -> DemoSpec:
    """The generator's spec for the `demo_data` section (the defaults of each domain where not set)."""
    plain = {
        "seed": config.seed,
        **{name: to_plain(getattr(config, name)) for name in ("brain", "oct", "wbc")},
    }
    return build(DemoSpec, plain, "demo_data")
