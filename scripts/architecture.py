"""The import graph of `kdmed`, read with `ast`: module cycles, and the generated parts of the architecture doc.

    python scripts/architecture.py                 # rewrite the generated sections of docs/architecture.md
    python scripts/architecture.py --check         # exit 1 when those sections are stale or a cycle exists
    python scripts/architecture.py --check-cycles  # exit 1 listing every import cycle (modules, packages)

Every import counts, also those inside functions (a deferred import is still a dependency) and those under
`if TYPE_CHECKING:`. `from kdmed.io import dicom_frames` is an import of the module `kdmed.io.dicom_frames`;
`from kdmed.io import load_study` one of the package `kdmed.io` (its `__init__`). The layer rules live in
`.importlinter` (checked by `lint-imports`); this script adds what a layers contract cannot say: no cycle
between any two modules, even inside one package, and none between any two units of the package graph
(the sub-packages and the top-level modules), whether or not a contract names them.

The doc keeps its hand-written sections; only the text between each pair of markers
`<!-- generated: NAME -->` ... `<!-- end generated: NAME -->` is rewritten (NAME: modules, packages).
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "kdmed"
APP = "app"  # listed in the module table; outside the package graph and the layers (it sits on top)
DOC = ROOT / "docs" / "architecture.md"


@dataclass(frozen=True)
class Module:
    name: str  # dotted, e.g. kdmed.io.load; a package is named by its folder (kdmed.io)
    path: Path
    is_package: bool

    @property
    def group(self) -> str:
        """The unit of the package graph: `kdmed.<sub-package>` for modules inside a sub-package, else the
        module itself (`kdmed.score`)."""
        return ".".join(self.name.split(".")[:2])


def discover(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Module]:
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        modules[".".join(parts)] = Module(".".join(parts), path, is_package)
    return modules


def _resolve(name: str, modules: dict[str, Module]) -> str | None:
    """The module that `import name` loads last: the longest known prefix of `name`."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: Module, modules: dict[str, Module], package: str = PACKAGE) -> set[str]:
    """The project modules `module` imports (itself excluded)."""
    tree = ast.parse(module.path.read_text(), filename=str(module.path))
    here = module.name if module.is_package else module.name.rpartition(".")[0]
    found: set[str | None] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(
                _resolve(alias.name, modules) for alias in node.names if _inside(alias.name, package)
            )
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            if not _inside(base, package):
                continue
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in modules else _resolve(base, modules))
    found.discard(None)
    found.discard(module.name)
    return found  # type: ignore[return-value]


def _inside(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def import_graph(modules: dict[str, Module]) -> dict[str, set[str]]:
    return {name: imports_of(module, modules) for name, module in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one node (Tarjan), each as one shortest cycle
    through its smallest member, so the report names a concrete import chain to break (fix it, rerun:
    a component with several cycles shows the next one)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0

    def visit(start: str) -> None:  # iterative Tarjan: no recursion limit on deep graphs
        nonlocal counter
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_shortest_cycle(graph, set(c), c[0]) for c in sorted(components)]


def _shortest_cycle(graph: dict[str, set[str]], members: set[str], start: str) -> list[str]:
    """Breadth-first from `start` back to itself inside one component: [start, ..., start]."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph.get(node, set()) & members):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start] if node != start else [start, start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    return [start]


def package_graph(modules: dict[str, Module], graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Which top-level units (sub-packages, or modules directly in `kdmed`) import which."""
    edges: dict[str, set[str]] = defaultdict(set)
    for name, targets in graph.items():
        source = modules[name].group
        edges[source]  # every unit appears, even one that imports nothing
        for target in targets:
            if modules[target].group != source and target != PACKAGE:
                edges[source].add(modules[target].group)
    return edges


def all_cycles(root: Path = ROOT) -> list[tuple[str, list[str]]]:
    """("module", cycle) for each module cycle, then ("package", cycle) for each cycle of the package graph."""
    modules = discover(root)
    graph = import_graph(modules)
    found = [("module", cycle) for cycle in find_cycles(graph)]
    return found + [("package", cycle) for cycle in find_cycles(package_graph(modules, graph))]


# ------------------------------------------------------------------------------------------- the doc


def first_sentence(path: Path) -> str:
    """The first sentence of the module's docstring (its first paragraph when no sentence ends in it)."""
    doc = (ast.get_docstring(ast.parse(path.read_text())) or "").strip()
    if not doc:
        return "(no docstring)"
    paragraph = " ".join(line.strip() for line in doc.split("\n\n")[0].splitlines())
    end = paragraph.find(". ")
    sentence = paragraph[: end + 1] if end >= 0 else paragraph
    return sentence.replace("|", "\\|")


def module_table(paths: list[Path], root: Path = ROOT) -> str:
    rows = ["| path | lines | what it is (first sentence of its docstring) |", "|---|---:|---|"]
    for path in sorted(paths):
        lines = len(path.read_text().splitlines())
        rows.append(f"| `{path.relative_to(root).as_posix()}` | {lines} | {first_sentence(path)} |")
    return "\n".join(rows)


def package_table(modules: dict[str, Module], graph: dict[str, set[str]]) -> str:
    edges = package_graph(modules, graph)
    importers: dict[str, set[str]] = defaultdict(set)
    for source, targets in edges.items():
        for target in targets:
            importers[target].add(source)
    rows = ["| unit | imports | imported by |", "|---|---|---|"]
    for unit in sorted(edges):
        uses = ", ".join(f"`{_short(t)}`" for t in sorted(edges[unit])) or "-"
        used_by = ", ".join(f"`{_short(s)}`" for s in sorted(importers[unit])) or "-"
        rows.append(f"| `{_short(unit)}` | {uses} | {used_by} |")
    return "\n".join(rows)


def _short(unit: str) -> str:
    return unit.removeprefix(PACKAGE + ".")


def generated_sections(root: Path = ROOT) -> dict[str, str]:
    modules = discover(root)
    graph = import_graph(modules)
    listed = [m.path for m in modules.values()] + sorted((root / APP).rglob("*.py"))
    return {"modules": module_table(listed, root), "packages": package_table(modules, graph)}


def render(doc: str, sections: dict[str, str]) -> str:
    """`doc` with the text between each section's markers replaced; a missing marker is an error."""
    for name, body in sections.items():
        begin, end = f"<!-- generated: {name} -->", f"<!-- end generated: {name} -->"
        if doc.count(begin) != 1 or doc.count(end) != 1 or doc.index(begin) > doc.index(end):
            raise SystemExit(
                f"{DOC.relative_to(ROOT)}: needs exactly one '{begin}' followed by one '{end}'; add the pair "
                "where the generated section belongs"
            )
        head, rest = doc.split(begin)
        _, tail = rest.split(end)
        doc = f"{head}{begin}\n{body}\n{end}{tail}"
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="fail on a stale doc or any module cycle")
    parser.add_argument("--check-cycles", action="store_true", help="fail listing every module cycle")
    args = parser.parse_args(argv)
    cycles = all_cycles()
    for kind, cycle in cycles:
        print(f"{kind} import cycle: " + " -> ".join(cycle), file=sys.stderr)
    if args.check_cycles:
        return 1 if cycles else 0
    current = DOC.read_text()
    wanted = render(current, generated_sections())
    if args.check:
        if wanted != current:
            print(
                f"{DOC.relative_to(ROOT)} is stale: run `python scripts/architecture.py` and commit the result",
                file=sys.stderr,
            )
        return 1 if cycles or wanted != current else 0
    if wanted != current:
        DOC.write_text(wanted)
        print(f"rewrote the generated sections of {DOC.relative_to(ROOT)}")
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main())
