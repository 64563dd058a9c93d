"""Layers point down (docs/layers.md): the import-linter contract in pyproject.toml and tools/import_graph.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import import_graph  # noqa: E402  (tools/ is not a package)

LINT_IMPORTS = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    if LINT_IMPORTS is None:
        pytest.fail("lint-imports not found: pip install -r requirements-dev.txt (import-linter)")
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run([LINT_IMPORTS, "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True)


def test_import_contract_is_kept() -> None:
    res = _lint(ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 kept, 0 broken" in res.stdout


def _fake_tree(root: Path, core_body: str) -> None:
    """core/ and models/ packages, the project's contract, and ``core/base.py`` holding ``core_body``."""
    for pkg in import_graph.LAYERS[:-1]:
        (root / pkg).mkdir()
        (root / pkg / "__init__.py").write_text("")
    (root / "models" / "net.py").write_text("from core.base import X\n")
    (root / "core" / "base.py").write_text(core_body)
    text = (ROOT / "pyproject.toml").read_text()
    (root / "pyproject.toml").write_text(text[text.index("[tool.importlinter]") :])


def test_contract_breaks_on_an_upward_import(tmp_path: Path) -> None:
    _fake_tree(tmp_path, "X = 1\n\ndef later():\n    from models import net  # deferred: still an edge\n")
    res = _lint(tmp_path)
    assert res.returncode != 0 and "BROKEN" in res.stdout


def test_import_graph_finds_upward_edges(tmp_path: Path) -> None:
    _fake_tree(tmp_path, "X = 1\n\ndef later():\n    from models import net\n")
    (tmp_path / "detect" / "rel.py").write_text("from ..training import loop\nfrom . import other\n")
    up, counts = import_graph.upward_edges(tmp_path)
    assert up == [
        "core/base.py:4: core.base (core) -> models (models)",
        "detect/rel.py:1: detect.rel (detect) -> training (training)",
    ]
    assert counts[("models", "core")] == 1


def test_no_upward_import_in_this_tree() -> None:
    up, _ = import_graph.upward_edges(ROOT)
    assert up == []
