"""`dvc plots show` without internet: an HTML page template with Vega, Vega-Lite and Vega-Embed inlined.

dvc-render's default page loads the three libraries from cdn.jsdelivr.net, so on a machine with no
internet (a hospital network) `dvc_plots/index.html` stays blank. vl-convert-python (BSD-3-Clause, from
the Vega project) carries the libraries inside its wheel; `javascript_bundle()` returns them as one classic
script that sets `window.vegaEmbed`, the function dvc-render's plot divs call. The template leaves out
dvc-render's scripts placeholder (where the CDN tags would go), so the page it fills is self-contained.

DVC finds the template through `plots.html_template` in .dvc/config (a path relative to .dvc/).
"""

from __future__ import annotations

import re
from importlib.metadata import version
from importlib.util import find_spec
from pathlib import Path

from kdmed.atomic import write_text
from kdmed.errors import KdmedError

# Written by `make setup` (never committed: it is ~1 MB of generated JavaScript); .dvc/config names it.
TEMPLATE_NAME = "plots_offline.html"

# Written around the bundle; `{plot_divs}` and `{refresh_tag}` are dvc-render's placeholders. The scripts
# placeholder is deliberately absent: dvc-render would fill it with CDN <script src> tags.
_PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
    <!-- Written by `kdmed plots-template` from vl-convert-python __VLC__: Vega __VEGA__, Vega-Lite __VL__,
         Vega-Embed __EMBED__, inlined so the page renders without network access.
         Vega, Vega-Lite, Vega-Embed: BSD-3-Clause, University of Washington Interactive Data Lab. -->
    <script type="text/javascript">
__BUNDLE__
    </script>
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""

# Text that must not occur in the inlined code: it would end the <script> element early, or dvc-render
# would substitute into it when it fills the page.
_FORBIDDEN_IN_BUNDLE = ("</script", "{plot_divs}", "{scripts}", "{refresh_tag}")


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.lstrip("v").split("."))


def expected_vega_lite_major() -> int:
    """The Vega-Lite major version of the specs dvc-render writes (from its line template's `$schema`)."""
    from dvc_render.vega_templates import LinearTemplate

    schema = LinearTemplate.DEFAULT_CONTENT["$schema"]
    match = re.search(r"/vega-lite/v(\d+)\.json$", schema)
    if match is None:
        raise KdmedError(
            f"dvc-render's line template has an unexpected $schema {schema!r}; expected .../vega-lite/vN.json"
        )
    return int(match.group(1))


def vega_lite_version() -> str:
    """The newest Vega-Lite that vl-convert bundles within the major version dvc-render's specs declare."""
    import vl_convert

    major = expected_vega_lite_major()
    available = vl_convert.get_vegalite_versions()
    matching = [v for v in available if _version_key(v)[0] == major]
    if not matching:
        raise KdmedError(
            f"vl-convert-python {version('vl-convert-python')} bundles Vega-Lite {', '.join(available)}, none "
            f"of major version {major} (the one dvc-render's specs use); install a vl-convert-python that "
            "does (`make setup` installs the version pinned in constraints.txt)"
        )
    return max(matching, key=_version_key)


def offline_template() -> str:
    """The page template's text: dvc-render's placeholders around the inlined libraries."""
    import vl_convert

    vl = vega_lite_version()
    bundle = vl_convert.javascript_bundle(vl_version=vl)
    for text in _FORBIDDEN_IN_BUNDLE:
        if text in bundle.lower():
            raise KdmedError(
                f"the JavaScript bundle from vl-convert-python {version('vl-convert-python')} contains "
                f"{text!r}, which cannot be inlined in the plots page; pin another vl-convert-python"
            )
    fields = {
        "__VLC__": version("vl-convert-python"),
        "__VEGA__": vl_convert.get_vega_version(),
        "__VL__": vl,
        "__EMBED__": vl_convert.get_vega_embed_version(),
        "__BUNDLE__": bundle,  # last: the bundle itself must not be searched for the other fields
    }
    page = _PAGE
    for field, value in fields.items():
        page = page.replace(field, value)
    return page


PIPELINE_MODULES = {"dvc": "dvc", "dvc_render": "dvc", "vl_convert": "vl-convert-python"}


def require_pipeline_extra() -> None:
    """The pipeline's packages are an extra (`pip install kdmed` only scores): name the missing ones."""
    missing = sorted({package for module, package in PIPELINE_MODULES.items() if find_spec(module) is None})
    if missing:
        raise KdmedError(
            f"`kdmed plots-template` needs the pipeline extra, and {', '.join(missing)} is not installed; "
            "install it with `pip install 'kdmed[pipeline]'` (`make setup` installs every extra)"
        )


def install_template(repo: str | Path = ".") -> Path:
    """Write the template into `<repo>/.dvc/` and make the repository's .dvc/config point DVC at it."""
    require_pipeline_extra()
    from dvc.config import Config

    dvc_dir = Path(repo) / ".dvc"
    if not (dvc_dir / "config").is_file():
        raise KdmedError(
            f"{Path(repo).resolve()} is not a DVC project (no .dvc/config); run `kdmed plots-template` "
            "from the project root, or pass --repo"
        )
    path = dvc_dir / TEMPLATE_NAME
    write_text(path, offline_template())
    config = Config(dvc_dir=str(dvc_dir))
    if config.read("repo").get("plots", {}).get("html_template") != TEMPLATE_NAME:
        with config.edit("repo") as conf:
            conf["plots"]["html_template"] = TEMPLATE_NAME
    return path
