"""The import structure of ``src/vdm3d``: no cycles, and no job importing another job.

The graph is read from the source with :mod:`ast`, so imports inside functions count too: an import
moved into a function to dodge a cycle still closes the cycle for a reader. Three checks:

* between the top-level packages of vdm3d (``cameras``, ``splat``, ``diffusion``, ``models``, ...;
  a top-level module such as ``views.py`` counts as its own package), no cycle;
* between modules, no cycle (catches a package whose modules import each other in a circle);
* a module of ``jobs/`` imports no other job. ``object_orbit.py`` and ``object_refine.py`` are
  parts of the ``object`` job (its orbit and refinement stages), so ``object*`` is one job.
"""

from __future__ import annotations

import ast
import collections
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "vdm3d"

def _modules() -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package ``__init__``)."""
    mods = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        mods[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return mods


def _imported_names(node: ast.AST, module: str, is_pkg: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level:  # relative: from the module's package, one level up per extra dot
            base = module.split(".") if is_pkg else module.split(".")[:-1]
            base = base[:len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        return [target] + [f"{target}.{a.name}" for a in node.names]  # `from pkg import module`
    return []


def module_graph() -> dict[str, set[str]]:
    """Module -> the vdm3d modules it imports anywhere in its body (the deepest existing module)."""
    mods = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for module, (path, is_pkg) in mods.items():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            for name in _imported_names(node, module, is_pkg):
                target = resolve(name) if name.startswith("vdm3d.") else None
                if target and target != module:
                    graph[module].add(target)
    return graph


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = collections.defaultdict(set)
    for src, targets in graph.items():
        for t in targets:
            if package_of(t) != package_of(src) and package_of(t) != "vdm3d":
                out[package_of(src)].add(package_of(t))
    return out


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    nodes = set(graph) | {t for ts in graph.values() for t in ts}
    for root in sorted(nodes):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
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
                comp = set()
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.add(top)
                    if top == node:
                        break
                if len(comp) > 1:
                    found.append(frozenset(comp))
    return found


def _explain(graph: dict[str, set[str]], comp: frozenset[str], key=lambda m: m) -> str:
    return "; ".join(f"{a} -> {b}" for a in sorted(comp) for b in sorted(graph.get(a, ())) if key(b) in comp)


def test_cycle_finder_finds_a_cycle_and_not_a_chain():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset("abc")]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_reads_function_level_and_relative_imports():
    graph = module_graph()
    # jobs/object.py imports the refinement inside run_object; the test must see it
    assert "vdm3d.jobs.object_refine" in graph["vdm3d.jobs.object"]
    assert "vdm3d.protocols" in graph["vdm3d.diffusion.samplers"]


def test_no_cycle_between_packages():
    graph = module_graph()
    packages = package_graph(graph)
    bad = cycles(packages)
    detail = [_explain(graph, c, package_of) for c in bad]
    assert not bad, f"import cycles between packages: {detail}"


def test_no_cycle_between_modules():
    graph = module_graph()
    bad = cycles(graph)
    assert not bad, f"import cycles between modules: {[_explain(graph, c) for c in bad]}"


def job_of(module: str) -> str | None:
    """``vdm3d.jobs.object_orbit`` -> ``object``; None for modules outside jobs/."""
    parts = module.split(".")
    if len(parts) < 3 or parts[1] != "jobs":
        return None
    return parts[2].split("_")[0]


def test_no_job_imports_another_job():
    graph = module_graph()
    bad = [f"{m} -> {t}" for m, ts in graph.items() for t in ts
           if job_of(m) and job_of(t) and job_of(m) != job_of(t)]
    assert not bad, f"a job imports another job (move the shared stage into recon/, geometry/ or cameras/): {bad}"
