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


def _module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph():
    """``{module: {imported project modules}}`` for varshift/ and reproduce/, counting imports
    anywhere in a module (inside functions too), relative imports resolved."""
    paths = {_module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}
    graph = {}
    for name, path in paths.items():
        is_pkg = path.name == "__init__.py"
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                    pkg = pkg[:len(pkg) - node.level + 1]
                    base = ".".join([*pkg, base] if base else pkg)
                # `from pkg import sub` depends on the submodule; `from pkg import name` on pkg
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in paths else base
                           for a in node.names]
            for target in targets:
                found = target
                while found and found not in paths:
                    found = found.rpartition(".")[0]
                if found and found != name:
                    deps.add(found)
        graph[name] = deps
    return graph


def import_cycles(graph):
    """Strongly connected components of more than one module (Tarjan), sorted."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def test_cycle_finder_sees_a_cycle_through_a_function_local_import():
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_counting_imports_inside_functions():
    graph = import_graph()
    assert "varshift.bnstats" in graph["varshift.diagnostics.recalibrate"]
    cycles = import_cycles(graph)
    assert not cycles, "modules that import each other (inside functions too):\n" + "\n".join(
        "  " + " <-> ".join(c) for c in cycles)
