"""The project's import graph by layer, from the source alone (``ast``; nothing is imported or run).

Every ``import`` and ``from ... import`` in every ``.py`` file (deferred imports inside functions included) is an
edge from the importing module's layer to the imported module's layer. Layers, bottom to top (docs/layers.md):

    core < models < detect < datasets < training < scripts (train.py, infer.py, bench/, tools/)

An edge that points UP (a lower layer importing a higher one) is printed with its file and line; the exit code is
1 when there is any. ``tests/`` is left out (tests may import any layer). ``--edges`` also prints the count of
module-to-module edges between each pair of layers.

    .venv/bin/python tools/import_graph.py                 # this tree
    .venv/bin/python tools/import_graph.py --root /tmp/old # another checkout (e.g. a git worktree of main)
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import Counter
from pathlib import Path

LAYERS = ("core", "models", "detect", "datasets", "training", "scripts")
_PACKAGES = set(LAYERS) - {"scripts"}
_SKIP_DIRS = {".venv", ".git", "tests", "runs", "__pycache__", "demo_out"}


def layer_of(module: str) -> str | None:
    """The layer of a dotted module name of the project, or None for a module from outside."""
    top = module.split(".")[0]
    if top in _PACKAGES:
        return top
    if top in ("train", "infer", "bench", "tools"):
        return "scripts"
    return None


def module_name(path: Path, root: Path) -> str:
    """Dotted module name of a file below ``root`` (``detect/raster.py`` -> ``detect.raster``)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path, module: str) -> list[tuple[str, int]]:
    """``(imported module, line)`` for every import in a file, relative imports resolved against ``module``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    out: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: climb from this module's package
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            out.append((name, node.lineno))
    return out


def upward_edges(root: Path) -> tuple[list[str], Counter[tuple[str, str]]]:
    """Upward imports (``file:line: a -> b``) and the count of module edges per ``(from layer, to layer)``."""
    rank = {name: i for i, name in enumerate(LAYERS)}
    up: list[str] = []
    counts: Counter[tuple[str, str]] = Counter()
    for path in sorted(root.rglob("*.py")):
        if _SKIP_DIRS & set(path.relative_to(root).parts[:-1]):
            continue
        module = module_name(path, root)
        src = layer_of(module)
        if src is None:
            continue
        for target, line in imports_of(path, module):
            dst = layer_of(target)
            if dst is None or dst == src:
                continue
            counts[(src, dst)] += 1
            if rank[dst] > rank[src]:
                up.append(f"{path.relative_to(root)}:{line}: {module} ({src}) -> {target} ({dst})")
    return up, counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1], help="checkout to scan")
    p.add_argument("--edges", action="store_true", help="also print edge counts between layers")
    args = p.parse_args(argv)
    up, counts = upward_edges(args.root.resolve())
    if args.edges:
        for (src, dst), n in sorted(counts.items(), key=lambda kv: (LAYERS.index(kv[0][0]), LAYERS.index(kv[0][1]))):
            print(f"{src:>9} -> {dst:<9} {n:4d}{'  UPWARD' if LAYERS.index(dst) > LAYERS.index(src) else ''}")
    for line in up:
        print(line)
    print(f"{len(up)} upward import(s) in {args.root} (layers: {' < '.join(LAYERS)})")
    return 1 if up else 0


if __name__ == "__main__":
    sys.exit(main())
