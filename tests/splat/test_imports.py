"""The renderer's modules import in one direction: render -> backends -> output (issue 11)."""

import ast
from pathlib import Path

import vdm3d

SPLAT = Path(vdm3d.__file__).parent / "splat"


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_backends_never_import_render_and_render_imports_them_at_the_top():
    backends = sorted((SPLAT / "backends").glob("*.py"))
    assert {p.stem for p in backends} >= {"torch_ref", "torch", "gsplat"}
    for path in backends:
        assert "vdm3d.splat.render" not in imported_modules(path), f"{path.name} imports vdm3d.splat.render"
    tree = ast.parse((SPLAT / "render.py").read_text())
    top = {n.module for n in tree.body if isinstance(n, ast.ImportFrom)}
    nested = {n.module for f in tree.body if isinstance(f, ast.FunctionDef)
              for n in ast.walk(f) if isinstance(n, ast.ImportFrom)}
    assert "vdm3d.splat.backends" in top and not nested
    assert "vdm3d.splat.render" not in imported_modules(SPLAT / "output.py")
