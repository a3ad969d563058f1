"""Layers that are real (issue 15): no import cycle between modules or packages, Captum attribution beside
the models, `kdmed.io` used through its public API, and the registry as the only list of methods."""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import sys
from pathlib import Path

import yaml

from kdmed.config import MethodsConfig, Params
from kdmed.models.mkd import LITE0_CRITICAL_POINTS
from kdmed.models.registry import DETECTORS, METHOD_NAMES, default_config, paper_backbone

ROOT = Path(__file__).resolve().parent.parent


def _architecture():
    spec = importlib.util.spec_from_file_location("architecture", ROOT / "scripts" / "architecture.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["architecture"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


architecture = _architecture()


def test_the_cycle_finder_names_a_cycle_and_ignores_a_chain():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert architecture.find_cycles(graph) == [["a", "b", "c", "a"]]
    assert architecture.find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_module_or_package_import_cycles():
    # Before issue 15: kdmed.io.dicom_frames <-> dicom_multiframe / mosaic (modules), models <-> localize
    # and config <-> data (packages).
    assert architecture.all_cycles() == []


def test_the_models_do_not_import_the_localize_stage():
    graph = architecture.import_graph(architecture.discover())
    offenders = {
        (source, target)
        for source, targets in graph.items()
        for target in targets
        if source.startswith("kdmed.models") and target.startswith("kdmed.localize")
    }
    assert not offenders


def test_no_module_outside_kdmed_io_imports_its_private_parts():
    """Outside the package, `kdmed.io` is imported as `kdmed.io` only (its `__all__`)."""
    offenders = []
    for path in [*ROOT.glob("kdmed/**/*.py"), *ROOT.glob("app/**/*.py"), *ROOT.glob("scripts/*.py")]:
        if "kdmed/io/" in path.as_posix():
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            offenders += [(str(path), n) for n in names if n.startswith("kdmed.io.")]
    assert offenders == []


def test_the_config_names_the_registry_methods_with_their_settings_classes():
    assert tuple(Params.method_names()) == METHOD_NAMES
    defaults = MethodsConfig()
    for method in METHOD_NAMES:
        assert type(getattr(defaults, method)) is DETECTORS[method].settings


def test_no_other_module_lists_all_the_methods():
    """A literal holding every method name is a second list of methods: a tuple, list or set, or a dict
    from each method to a name or a string (its settings class, its teacher). Tables of published numbers
    per method (`kdmed.published`) are data, not a list of methods."""
    names = set(METHOD_NAMES)
    offenders = []
    for path in [*ROOT.glob("kdmed/**/*.py"), *ROOT.glob("app/**/*.py"), *ROOT.glob("scripts/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Tuple | ast.List | ast.Set):
                items = node.elts
            elif isinstance(node, ast.Dict) and all(_names_a_fact(v) for v in node.values):
                items = [k for k in node.keys if k is not None]
            else:
                continue
            values = {i.value for i in items if isinstance(i, ast.Constant)}
            if names <= values:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == [], "use kdmed.models.registry.METHOD_NAMES"


def _names_a_fact(value: ast.expr) -> bool:
    return isinstance(value, ast.Name) or (isinstance(value, ast.Constant) and isinstance(value.value, str))


def test_paper_teachers_and_the_lite0_taps_come_from_one_place():
    assert {m: paper_backbone(m) for m in METHOD_NAMES} == {
        "stpm": "resnet18",
        "rd4ad": "wide_resnet50_2",
        "mkd": "vgg16",
    }
    assert default_config("mkd", "efficientnet_lite0").layers == LITE0_CRITICAL_POINTS
    assert default_config("mkd").layers == ()  # VGG-16: the pools at the configured strides
    for params_file in ("params.yaml", "real/params.yaml"):
        mkd = yaml.safe_load((ROOT / params_file).read_text())["methods"]["mkd"]
        if mkd.get("backbone") == "efficientnet_lite0":
            assert tuple(mkd["layers"]) == LITE0_CRITICAL_POINTS, params_file


def test_default_config_is_the_settings_class_with_another_teacher():
    config = default_config("rd4ad", "resnet18", weights="random")
    assert config == dataclasses.replace(DETECTORS["rd4ad"].settings(), backbone="resnet18", weights="random")
