"""`dvc plots show` pages render offline: Vega, Vega-Lite and Vega-Embed inlined, no CDN script tags."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kdmed.cli import main
from kdmed.errors import KdmedError
from kdmed.plots_offline import TEMPLATE_NAME, expected_vega_lite_major, install_template, offline_template

BIN = Path(sys.executable).parent
SCRIPT_TAG = re.compile(r"<script\b[^>]*>", re.IGNORECASE)


@pytest.fixture(scope="module")
def template() -> str:
    return offline_template()


def test_template_inlines_the_libraries_and_keeps_dvc_placeholders(template):
    tags = SCRIPT_TAG.findall(template)
    assert len(tags) == 1 and "src" not in tags[0].lower(), tags
    assert "window.vegaEmbed=" in template  # the global dvc-render's plot divs call
    assert template.count("{plot_divs}") == 1 and "{refresh_tag}" in template
    # dvc-render fills the scripts placeholder with CDN <script src> tags: it must not be in the template.
    assert "{scripts}" not in template
    match = re.search(r"Vega-Lite (\d+)\.", template)
    assert match and int(match.group(1)) == expected_vega_lite_major() == 5, match


def test_dvc_plots_show_writes_a_self_contained_page(tmp_path):
    import vl_convert

    project = tmp_path / "project"
    project.mkdir()
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    subprocess.run([BIN / "dvc", "init", "--no-scm", "-q"], cwd=project, env=env, check=True)
    (project / "loss.csv").write_text("step,loss\n0,1.0\n1,0.5\n2,0.25\n")
    (project / "dvc.yaml").write_text("plots:\n  - loss.csv:\n      x: step\n      y: loss\n")

    assert main(["plots-template", "--repo", str(project)]) == 0
    assert f"html_template = {TEMPLATE_NAME}" in (project / ".dvc" / "config").read_text()
    shown = subprocess.run(
        [BIN / "dvc", "plots", "show", "-o", "plots_html"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    assert shown.returncode == 0, shown.stderr

    page = (project / "plots_html" / "index.html").read_text()
    assert not [tag for tag in SCRIPT_TAG.findall(page) if "src" in tag.lower()]
    assert "cdn.jsdelivr.net" not in page
    assert "window.vegaEmbed=" in page
    body = page[page.index("<body>") :]
    match = re.search(r"var spec = (\{.*?\});\s*vegaEmbed\('#loss_csv', spec\);", body, re.DOTALL)
    assert match, body[:2000]
    spec = json.loads(match.group(1))
    assert [row["loss"] for row in spec["data"]["values"]] == ["1.0", "0.5", "0.25"]
    # The embedded spec draws a line with the Vega / Vega-Lite versions the page carries.
    vl = re.search(r"Vega-Lite ([\d.]+),", page).group(1)
    svg = vl_convert.vegalite_to_svg(spec, vl_version=vl)
    assert 'class="mark-line role-mark' in svg and "loss.csv" in svg


def test_a_folder_without_dvc_is_refused_with_the_fix(tmp_path):
    with pytest.raises(KdmedError, match=r"not a DVC project .*--repo"):
        install_template(tmp_path)
    assert not (tmp_path / ".dvc").exists()
