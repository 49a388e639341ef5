"""pipeline/ is the Ray-free core: nothing under it imports ray, at import time or at all."""

from __future__ import annotations

import ast
import subprocess
import sys

from conftest import ROOT


def test_no_module_under_pipeline_imports_ray():
    offenders = []
    for path in sorted((ROOT / "pipeline").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [f"{path.name}: {n}" for n in names if n == "ray" or n.startswith("ray.")]
    assert offenders == []


def test_running_the_pipeline_loads_no_ray():
    code = (
        "import sys, pipeline.runner, pipeline.cli, pipeline.formats, pipeline.tiny_models; "
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
