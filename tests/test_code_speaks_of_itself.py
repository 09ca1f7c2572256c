"""Code speaks of itself: no dates, machines, issue numbers, helper names or build paths.

History belongs in ``CHANGELOG.md``; code, comments, docstrings and report texts say what the
code does and what a number is. The scan covers ``varshift/``, ``reproduce/``, ``tests/``,
``benchmarks/`` and ``docs/_ext/`` (``*.py`` and ``*.md``) and ``docs/*.md``; ``docs/results/``
and data files (CSV, JSON, TOML) are data and are not read. The rule, per kind of text:

- Python comments (``COMMENT`` tokens of :mod:`tokenize`) and docstrings (the first statement
  of a module, class or function when it is a string) in every scanned file;
- every other string literal in ``varshift/``, ``reproduce/``, ``benchmarks/`` and ``docs/_ext/`` (messages,
  report and profile texts); string literals in ``tests/`` are test data (a timestamp in a
  synthetic record, a skip reason) and are not read;
- the whole text of a Markdown file.

In these, each pattern of :data:`PATTERNS` is a finding: a calendar date (year-month-day), the
phrase that names the build machine, an issue number, a lettered helper name and an absolute
path of a build machine (a work, home or root folder at the start of a path; a run's relative
``<out>/runs/<hash>/work`` folder is not one). :data:`ALLOWED` lists the few user-facing texts
where the phrase means the machine the user runs on.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: folders scanned recursively (``*.py``, ``*.md``)
TREES = ("varshift", "reproduce", "tests", "benchmarks", "docs/_ext")
#: folders whose non-docstring string literals are data, not text about the code
DATA_STRINGS = ("tests",)

PATTERNS = {
    "date": re.compile(r"(?<!\d)(?:19|20)\d\d-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])(?!\d)"),
    "this machine": re.compile(r"\bthis\s+(?:[\w-]+\s+)?machine\b", re.IGNORECASE),
    "issue number": re.compile(r"\bissues?\s+#?\d+|\bissue\s*#\d+", re.IGNORECASE),
    "helper name": re.compile(r"\b[Hh]elper\s+[A-Z]\b"),
    "build-machine path": re.compile(r"(?:^|[\s\"'`(=:,\[])/(?:work|home|root)/"),
}

#: (file, pattern, text that must appear on the flagged line): why the finding is allowed
ALLOWED: dict[tuple[str, str, str], str] = {
    ("docs/_ext/vsdocs.py", "this machine", "a run on this"):
        "the docs page tells its reader that the results shown are a run on the machine that "
        "built the page (the reader's own), not the published records",
}


def _findings(text, first_line, kind):
    """``(line, pattern name, line text)`` of every pattern found in ``text``."""
    found = []
    for offset, line in enumerate(text.splitlines()):
        for name, pattern in PATTERNS.items():
            if pattern.search(line):
                found.append((first_line + offset, name, kind, line.strip()))
    return found


def _docstring_nodes(tree):
    """The string constants that are docstrings (first statement of a module/class/def)."""
    nodes = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                nodes.add(id(body[0].value))
    return nodes


def scan_python(source, strings=True):
    """Findings in a Python source's comments and docstrings (and other strings if ``strings``).

    Returns ``[(line, pattern, kind, text)]`` with ``kind`` one of ``comment``, ``docstring``,
    ``string``.
    """
    found = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            found += _findings(tok.string, tok.start[0], "comment")
    tree = ast.parse(source)
    docstrings = _docstring_nodes(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) in docstrings:
                found += _findings(node.value, node.lineno, "docstring")
            elif strings:
                found += _findings(node.value, node.lineno, "string")
    return found


def scan_markdown(text):
    """Findings in the whole text of a Markdown file."""
    return _findings(text, 1, "markdown")


def scanned_files():
    files = []
    for tree in TREES:
        files += sorted(p for p in (ROOT / tree).rglob("*") if p.suffix in (".py", ".md"))
    files += sorted((ROOT / "docs").glob("*.md"))
    return [p for p in files if "docs/results" not in p.relative_to(ROOT).as_posix()]


def scan_file(path):
    rel = path.relative_to(ROOT).as_posix()
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".md":
        return scan_markdown(text)
    return scan_python(text, strings=not rel.startswith(DATA_STRINGS))


def _allowed(rel, finding):
    _, name, _, line = finding
    return any(f == rel and p == name and snippet in line for f, p, snippet in ALLOWED)


def test_the_scan_reads_the_trees_it_names():
    files = {p.relative_to(ROOT).as_posix() for p in scanned_files()}
    assert "varshift/bnstats/__init__.py" in files and "reproduce/bundle.py" in files
    assert "docs/_ext/shown_results.py" in files and "tests/test_code_speaks_of_itself.py" in files
    assert not any(f.startswith("docs/results/") for f in files)


def test_code_comments_and_docs_do_not_narrate_history():
    problems = []
    for path in scanned_files():
        rel = path.relative_to(ROOT).as_posix()
        problems += [f"{rel}:{line}: {name} in a {kind}: {text}"
                     for line, name, kind, text in scan_file(path)
                     if not _allowed(rel, (line, name, kind, text))]
    assert not problems, "history or machines in code (move it to CHANGELOG.md):\n" + \
        "\n".join(problems)


def test_every_allowed_finding_still_exists():
    """An allow-list entry whose text is gone is stale and must be removed."""
    for (rel, name, snippet), _reason in ALLOWED.items():
        assert any(n == name and snippet in line for _, n, _, line in scan_file(ROOT / rel)), \
            (rel, name, snippet)


INJECTED = '''"""A module, written 2026-12-02 on this machine."""

X = 1  # fitted on 2026-12-01, see issue #12
LABEL = "run on 2026-12-03"


def f():
    """Written by helper B; data in /work/.library/device/KINDS.md."""
    return "<out>/runs/<hash>/work/ is relative"  # issue 20 again
'''


@pytest.mark.parametrize("strings", [True, False])
def test_the_scanner_finds_injected_history(strings):
    found = {(line, name, kind) for line, name, kind, _ in scan_python(INJECTED, strings=strings)}
    expected = {(1, "date", "docstring"), (1, "this machine", "docstring"),
                (3, "date", "comment"), (3, "issue number", "comment"),
                (8, "helper name", "docstring"), (8, "build-machine path", "docstring"),
                (9, "issue number", "comment")}
    if strings:
        expected.add((4, "date", "string"))
    assert found == expected


def test_the_scanner_leaves_data_and_relative_paths_alone():
    source = ('STAMP = "2026-01-01T00:00:00Z"\n'
              'PATH = "<out>/runs/<hash>/work/model.keras"  # a run\'s work folder\n'
              'GLOB = "*/work/started"\n'
              'x = 2026 - 12 - 1  # arithmetic, not a date: 2026 - 12\n')
    assert scan_python(source, strings=False) == []
    assert [name for _, name, _, _ in scan_python(source, strings=True)] == ["date"]
    assert scan_markdown("Fixed in the 1.2 release; see `docs/api.md`.\n") == []
    assert [name for _, name, _, _ in scan_markdown("Run on this machine, 2026-12-01.\n")] \
        == ["date", "this machine"]
    assert [name for _, name, _, _ in scan_markdown("about 24 min on this 2-core machine\n")] \
        == ["this machine"]
