"""Code shape: no function body longer than 60 lines, and no import cycle.

Both rules cover the library (``varshift/``), the reproduction (``reproduce/``), the benchmarks
(``benchmarks/``) and the documentation's extensions (``docs/_ext/``, imported by their file
names as ``docs/conf.py`` puts the folder on ``sys.path``).

A function body is counted from the first statement after the docstring to the last line of
the last statement; nested functions count inside their parent and are also checked on their
own.

An import counts wherever it is written (inside a function too), and importing a submodule
counts as importing every package above it that the importer is not itself inside: ``import
varshift.train.recipes`` runs ``varshift/train/__init__.py`` first. Two layers of the same
package (``varshift.nets`` and ``varshift.train``) must not import each other either, in any
of their modules.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: (folder, the module-name prefix of its files)
SOURCES = (("varshift", "varshift"), ("reproduce", "reproduce"), ("benchmarks", "benchmarks"),
           ("docs/_ext", ""))
#: packages whose direct subpackages and modules are layers (no cycle between them)
LAYERED = ("varshift", "reproduce")
MAX_BODY_LINES = 60


def source_files():
    """``{module name: path}`` of every Python file of :data:`SOURCES`."""
    found = {}
    for folder, prefix in SOURCES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(([prefix] if prefix else []) + parts)] = path
    return found


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
    for path in source_files().values():
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


def packages_above(name):
    """The packages ``name`` lies in, innermost first (``a.b.c`` -> ``a.b``, ``a``)."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]


def imported_names(node, name, is_package, known):
    """The dotted names one import statement of module ``name`` asks for."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        package = name.split(".") if is_package else name.split(".")[:-1]
        package = package[:len(package) - node.level + 1]
        base = ".".join([*package, base] if base else package)
    # `from pkg import sub` imports the submodule; `from pkg import name` the package
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]


def module_imports(source, name, is_package, known):
    """The project modules that running module ``name`` (text ``source``) imports: every
    import statement (inside functions too), each with the packages above it that ``name`` is
    not itself inside (their ``__init__`` runs on the way)."""
    own = {name, *packages_above(name)}
    deps = set()
    for node in ast.walk(ast.parse(source)):
        for asked in imported_names(node, name, is_package, known):
            target = asked
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target:
                deps.update(d for d in (target, *packages_above(target))
                            if d in known and d not in own)
    return deps


def import_graph():
    """``{module: {imported project modules}}`` of every file of :data:`SOURCES`
    (:func:`module_imports`)."""
    paths = source_files()
    return {name: module_imports(path.read_text(), name, path.name == "__init__.py", paths)
            for name, path in paths.items()}


def layer_of(name):
    """The layer a module belongs to: the subpackage or module right below a package of
    :data:`LAYERED` (``varshift.train.config`` -> ``varshift.train``); itself otherwise."""
    parts = name.split(".")
    return ".".join(parts[:2]) if parts[0] in LAYERED else name


def layer_graph(graph):
    """:func:`import_graph` with every module replaced by its :func:`layer_of`."""
    layers = {}
    for module, deps in graph.items():
        mine = layer_of(module)
        layers.setdefault(mine, set()).update(layer_of(d) for d in deps if layer_of(d) != mine)
    return layers


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


KNOWN = {"pkg", "pkg.low", "pkg.low.mod", "pkg.high", "pkg.high.rec", "pkg.high.run", "tool"}


def test_importing_a_submodule_runs_the_packages_above_it():
    source = "from pkg.high.rec import Recipe\n"
    assert module_imports(source, "pkg.low.mod", False, KNOWN) == {"pkg.high.rec", "pkg.high"}
    # a package's own __init__ (and the top package) is already running: not an edge
    assert module_imports(source, "pkg.high.run", False, KNOWN) == {"pkg.high.rec"}
    assert module_imports("from . import rec\n", "pkg.high", True, KNOWN) == {"pkg.high.rec"}
    assert module_imports("from .rec import x\n", "pkg.high.run", False, KNOWN) == {"pkg.high.rec"}


def test_imports_inside_functions_count():
    source = "import os\n\ndef f():\n    from pkg.low import mod\n    import tool\n"
    assert module_imports(source, "pkg.high.run", False, KNOWN) == {"pkg.low.mod", "pkg.low",
                                                                     "tool"}


def test_the_package_edge_closes_a_cycle_that_module_edges_alone_miss():
    # low.mod imports high.rec (a module that imports nothing), high's __init__ imports run,
    # run imports low: through high's __init__ the three form a cycle
    graph = {"pkg.low.mod": module_imports("from pkg.high.rec import R\n", "pkg.low.mod", False,
                                           KNOWN),
             "pkg.high": module_imports("from pkg.high.run import f\n", "pkg.high", True, KNOWN),
             "pkg.high.run": module_imports("def f():\n    from pkg.low import mod\n",
                                            "pkg.high.run", False, KNOWN),
             "pkg.high.rec": set()}
    assert import_cycles(graph) == [["pkg.high", "pkg.high.run", "pkg.low.mod"]]
    graph["pkg.high"] = set()
    assert import_cycles(graph) == []
    assert layer_of("varshift.train.config") == "varshift.train"
    assert layer_of("varshift.bnstats") == "varshift.bnstats" and layer_of("vsdocs") == "vsdocs"


def test_graph_covers_every_source_folder():
    graph = import_graph()
    assert {"varshift.nets", "varshift.nets._blocks"} <= graph["varshift.train.config"]
    assert "shown_results" in graph["vsdocs"]
    assert any(name.startswith("benchmarks.") for name in graph)


def test_no_import_cycle_between_modules_or_layers():
    graph = import_graph()
    problems = [("modules", c) for c in import_cycles(graph)]
    problems += [("layers", c) for c in import_cycles(layer_graph(graph))]
    assert not problems, ("import cycles (imports inside functions and package __init__ edges "
                          "counted):\n" + "\n".join(f"  {kind}: " + " <-> ".join(c)
                                                      for kind, c in problems))
