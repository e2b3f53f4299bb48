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


# Inside ray_core the dependency runs one way too: the public modules use _private/, and
# _private/ never imports them (it is handed what it needs), so no import cycle runs
# through the CoreWorker (issue 15).
PUBLIC_MODULES = {"actor", "remote_function", "util", "runtime_context", "experimental", "job_config",
                  "cluster_utils", "scripts", "internal", "_raylet"}


def _ray_core_imports(path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "ray_core":
                for alias in node.names:
                    yield f"ray_core.{alias.name}"
            else:
                yield node.module


def test_private_never_imports_the_public_modules():
    bad = []
    for path in (ROOT / "ray_core" / "_private").rglob("*.py"):
        for name in _ray_core_imports(path):
            parts = name.split(".")
            if parts[0] == "ray_core" and (len(parts) == 1 or parts[1] in PUBLIC_MODULES):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, bad
