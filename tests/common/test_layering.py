"""A lower layer never imports a higher one (ARCHITECTURE.md, "Layers")."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
LAYER = {"ray_common": 0, "ray_gcs": 1, "ray_plasma": 1, "ray_raylet": 2, "ray_core": 3}


def imported_packages(path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module.split(".")[0]


@pytest.mark.parametrize("package", sorted(LAYER))
def test_no_upward_imports(package):
    bad = []
    for path in (ROOT / package).rglob("*.py*"):
        if path.suffix not in (".py", ".pyx") or "_generated" in path.parts:
            continue
        for name in imported_packages(path) if path.suffix == ".py" else ():
            if name in LAYER and name != package and LAYER[name] >= LAYER[package]:
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, bad


def test_each_package_imports_alone():
    import subprocess
    import sys
    for package in LAYER:
        subprocess.run([sys.executable, "-c", f"import {package}"], check=True, cwd=ROOT)
