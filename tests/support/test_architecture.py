"""The package map holds: data flows schemas -> worker -> native -> storage, and imports only go
where that allows (read from the source with ast, so a lazy import inside a function counts too)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OURS = {"schemas", "worker", "native", "storage", "gateway", "embedq", "bench"}
# What each package may import of ours. embedq (the command line) and bench sit above everything.
ALLOWED = {
    "schemas": set(),
    "native": {"schemas"},
    "storage": {"schemas"},
    "worker": {"schemas", "native", "storage"},
    "gateway": {"schemas", "worker", "storage"},  # the HTTP face: a client of the queue, like the CLI
    "embedq": OURS,
    "bench": OURS,
}


def imports_of(package: str) -> dict[str, set[str]]:
    """Our top-level packages each module of `package` imports -> the modules that do it."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in OURS and top != package:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_imports_follow_the_package_map():
    wrong = {pkg: {dep: sorted(where) for dep, where in imports_of(pkg).items() if dep not in ALLOWED[pkg]}
             for pkg in ALLOWED}
    assert {pkg: bad for pkg, bad in wrong.items() if bad} == {}


def test_the_checker_sees_lazy_imports():
    # worker imports storage inside functions as well as at the top; both are found.
    assert {"schemas", "native", "storage"} <= set(imports_of("worker"))
    assert "worker" in imports_of("embedq")


def test_no_star_imports_in_tests():
    stars = [str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("*.py")
             if any(isinstance(n, ast.ImportFrom) and any(a.name == "*" for a in n.names)
                    for n in ast.walk(ast.parse(p.read_text(encoding="utf-8"))))]
    assert stars == []
