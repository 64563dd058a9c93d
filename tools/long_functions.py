"""Functions longer than 60 and than 100 lines (``ast``: from the ``def`` line to the last line, docstring included).

    .venv/bin/python tools/long_functions.py                  # this tree
    .venv/bin/python tools/long_functions.py --root /tmp/old  # another checkout
    .venv/bin/python tools/long_functions.py --min 100        # only the very long ones

Prints ``lines  file:line  qualified name``, longest first, then the counts over 60 and over 100 lines. ``tests/`` is
left out (test functions are tables of cases, not stages of a pipeline).
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

_SKIP_DIRS = {".venv", ".git", "tests", "runs", "__pycache__", "demo_out"}


def functions(root: Path) -> list[tuple[int, str, str]]:
    """``(lines, file:line, qualified name)`` of every function and method below ``root``."""
    out: list[tuple[int, str, str]] = []

    def visit(node: ast.AST, prefix: str, where: Path) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                out.append((child.end_lineno - child.lineno + 1, f"{where}:{child.lineno}", name))
                visit(child, f"{name}.", where)
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.", where)
            else:
                visit(child, prefix, where)

    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if _SKIP_DIRS & set(rel.parts[:-1]):
            continue
        visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)), "", rel)
    return sorted(out, key=lambda f: (-f[0], f[1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1], help="checkout to scan")
    p.add_argument("--min", type=int, default=61, help="list functions of at least this many lines (default 61)")
    args = p.parse_args(argv)
    found = functions(args.root.resolve())
    for lines, where, name in found:
        if lines >= args.min:
            print(f"{lines:5d}  {where}  {name}")
    over60 = sum(1 for f in found if f[0] > 60)
    over100 = sum(1 for f in found if f[0] > 100)
    print(f"{over60} function(s) over 60 lines, {over100} over 100, of {len(found)} in {args.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
