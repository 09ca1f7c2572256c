"""Code shape: no function body in varshift/ or reproduce/ longer than 60 lines.

The body is counted from the first statement after the docstring to the last line of the last
statement; nested functions count inside their parent and are also checked on their own.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("varshift", "reproduce")
MAX_BODY_LINES = 60


def body_lines(node):
    """Lines of a function's body without its docstring."""
    body = node.body
    if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)):
        body = body[1:]
    if not body:
        return 0
    return body[-1].end_lineno - body[0].lineno + 1


def long_functions(limit=MAX_BODY_LINES):
    """``[(path:line function, lines)]`` of every function whose body exceeds ``limit``."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    n = body_lines(node)
                    if n > limit:
                        found.append((f"{path.relative_to(ROOT)}:{node.lineno} {node.name}", n))
    return found


def test_body_lines_skips_the_docstring_and_counts_to_the_last_statement():
    tree = ast.parse('def f():\n    """doc\n    more"""\n    a = 1\n\n    return (a,\n            2)\n')
    assert body_lines(tree.body[0]) == 4
    tree = ast.parse("def g():\n    pass\n")
    assert body_lines(tree.body[0]) == 1


def test_no_function_body_over_60_lines():
    offenders = long_functions()
    if offenders:
        listing = "\n".join(f"  {where}: {n} lines" for where, n in offenders)
        pytest.fail(f"{len(offenders)} function bodies exceed {MAX_BODY_LINES} lines (docstring "
                    f"not counted); split them into named steps:\n{listing}")
