"""The package's shape, checked: the planner is pure, the modules import each other without a cycle, and no
module outgrows its room (DESIGN.md "Architecture"; issue 13)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "compose_kfp"

#: Modules that do I/O (files, processes, sockets) or pull in a library that does: none may be loaded by
#: importing the planner.
IO_MODULES = (
    "requests", "urllib3", "http.client", "filelock", "jinja2", "kfp",
    "compose_kfp.oci.registry", "compose_kfp.oci.auth", "compose_kfp.oci.layout", "compose_kfp.oci.blobs",
    "compose_kfp.oci.layer", "compose_kfp.oci.unpack",
    "compose_kfp.build.deps", "compose_kfp.build.requirements", "compose_kfp.build.observe",
    "compose_kfp.build.images", "compose_kfp.build.statedir", "compose_kfp.build.registries",
    "compose_kfp.build.credentials", "compose_kfp.build.destination", "compose_kfp.build.lock",
    "compose_kfp.build.apply", "compose_kfp.build.plan", "compose_kfp.schema", "compose_kfp.manifest.project",
)
#: The only compose_kfp modules the planner may load: value types and pure helpers.
PLANNER_MAY_LOAD = {
    "compose_kfp", "compose_kfp.planner", "compose_kfp.build", "compose_kfp.build.spec", "compose_kfp.build.state",
    "compose_kfp.oci", "compose_kfp.oci.image", "compose_kfp.oci.digest", "compose_kfp.oci.errors",
    "compose_kfp.runtime",
}
#: Standard library modules for processes, sockets and temporary files. Third-party libraries may load them
#: (pydantic does); a compose_kfp module must not while the planner is imported.
WATCHED = ("subprocess", "socket", "ssl", "tempfile", "shutil", "http.client", "urllib.request")

_PROBE = textwrap.dedent('''
    import importlib.abc, json, sys
    WATCHED = set(json.loads(sys.argv[2]))
    importers = []

    class Spy(importlib.abc.MetaPathFinder):
        """Records which module's code imports a watched module (the first frame outside the import system)."""

        def find_spec(self, name, path=None, target=None):
            if name in WATCHED:
                frame = sys._getframe(1)
                while frame is not None:
                    module = frame.f_globals.get("__name__", "")
                    if not module.startswith(("importlib", "_frozen_importlib")):
                        importers.append([name, module])
                        break
                    frame = frame.f_back
            return None

    sys.meta_path.insert(0, Spy())
    __import__(sys.argv[1])
    print(json.dumps({"modules": sorted(sys.modules), "importers": importers}))
''')


def _probe(module: str) -> dict:
    """Import ``module`` in a fresh interpreter; its ``sys.modules`` and who imported each watched module."""
    proc = subprocess.run([sys.executable, "-c", _PROBE, module, json.dumps(WATCHED)], cwd=REPO,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                          check=True)
    return json.loads(proc.stdout)


def test_the_probe_sees_io_imports():
    """Guard against a check that cannot fail: observation does load the installer module, and the spy sees a
    compose_kfp module import ``subprocess``."""
    found = _probe("compose_kfp.build.observe")
    assert "compose_kfp.build.deps" in found["modules"]
    assert any(module.startswith("compose_kfp.") for _, module in found["importers"]), found["importers"]


def test_planner_imports_no_io():
    found = _probe("compose_kfp.planner")
    loaded = set(found["modules"])
    assert "compose_kfp.planner" in loaded
    assert not loaded & set(IO_MODULES), sorted(loaded & set(IO_MODULES))
    ours = {m for m in loaded if m == "compose_kfp" or m.startswith("compose_kfp.")}
    assert ours <= PLANNER_MAY_LOAD, sorted(ours - PLANNER_MAY_LOAD)
    by_us = [(name, module) for name, module in found["importers"] if module.startswith("compose_kfp")]
    assert not by_us, by_us


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_lines(tree: ast.AST) -> set[int]:
    """Line numbers inside ``if TYPE_CHECKING:`` blocks (never executed, so not an import at run time)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def import_graph() -> dict[str, set[str]]:
    """Module -> the compose_kfp modules it imports: top-level AND function-level ``import``/``from ... import``
    statements (relative ones resolved), ``if TYPE_CHECKING:`` blocks left out. ``from pkg import name`` is an
    edge to ``pkg.name`` when that is a module, else to ``pkg``."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_lines(tree)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[:len(base) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names]
            else:
                continue
            edges.update(t for t in targets if t in modules and t != name)
        graph[name] = edges
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle found by a depth-first search, each as ``[a, b, ..., a]``."""
    cycles, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_the_import_graph_is_read():
    """Guard: the graph has the edges we know of (function-level ones included) and a made-up cycle is found."""
    graph = import_graph()
    assert "compose_kfp.build.state" in graph["compose_kfp.planner"]
    assert "compose_kfp.oci.registry" in graph["compose_kfp.build.registries"]  # a function-level import
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_no_import_cycle():
    cycles = find_cycles(import_graph())
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def _lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def _too_long(paths: list[Path]) -> list[str]:
    out = []
    for path in paths:
        rel = path.relative_to(PACKAGE)
        limit = 300 if rel.parts[0] == "cli" else None if rel.parts[0] == "oci" else 900
        if limit is not None and _lines(path) > limit:
            out.append(f"compose_kfp/{rel.as_posix()}: {_lines(path)} lines (limit {limit})")
    return out


def test_build_modules_fit_their_rooms():
    """The build side (build/, the planner, the rendered outputs, the build commands, errors) is within the limits."""
    paths = [*sorted((PACKAGE / "build").glob("*.py")), PACKAGE / "planner.py", PACKAGE / "errors.py",
             PACKAGE / "cli" / "build.py", *sorted((PACKAGE / "pipeline").rglob("*.py"))]
    assert not _too_long(paths)


def test_no_module_over_the_size_limits():
    """No CLI module over 300 lines; no module over 900 lines outside oci/."""
    assert not _too_long(sorted(PACKAGE.rglob("*.py")))
