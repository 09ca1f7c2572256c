"""``reproduce.markdown.md_table``: the one Markdown table writer of results, reports and pages."""

import importlib.util

import numpy as np
import pandas as pd
import pytest

from reproduce.markdown import md_table


def cells(line):
    """The cells of one table row, ``\\|`` kept inside its cell."""
    parts, cell, i = [], "", 0
    body = line.strip()[1:-1]
    while i < len(body):
        if body[i] == "\\" and body[i + 1:i + 2] == "|":
            cell, i = cell + "\\|", i + 2
            continue
        if body[i] == "|":
            parts.append(cell.strip())
            cell = ""
        else:
            cell += body[i]
        i += 1
    return [*parts, cell.strip()]


def test_a_table_has_a_header_a_rule_and_one_row_per_record():
    df = pd.DataFrame({"net": ["wrn", "preresnet"], "error": [4.25, 5.0], "seeds": [5, 10]})
    lines = md_table(df).splitlines()
    assert len(lines) == 2 + len(df)
    assert cells(lines[0]) == ["net", "error", "seeds"] and lines[1] == "|---|---|---|"
    assert [cells(line) for line in lines[2:]] == [["wrn", "4.25", "5"], ["preresnet", "5", "10"]]


def test_floats_follow_the_format_and_nan_is_an_empty_cell():
    df = pd.DataFrame({"x": [1 / 3, np.nan, 12345.678]})
    assert [cells(r)[0] for r in md_table(df).splitlines()[2:]] == ["0.3333", "", "1.235e+04"]
    assert [cells(r)[0] for r in md_table(df, ".2f").splitlines()[2:]] == ["0.33", "", "12345.68"]


def test_a_cell_never_leaves_its_column():
    df = pd.DataFrame({"a|b": ["x | y", "two\nlines"], "n": [1, 2]})
    lines = md_table(df).splitlines()
    assert len(lines) == 4 and all(len(cells(line)) == 2 for line in lines if line != "|---|---|")
    assert cells(lines[0])[0] == "a\\|b" and cells(lines[2])[0] == "x \\| y"
    assert cells(lines[3])[0] == "two lines"


@pytest.mark.skipif(importlib.util.find_spec("tabulate") is None, reason="needs tabulate")
def test_the_same_cells_as_pandas_to_markdown():
    df = pd.DataFrame({"net": ["wrn", "preresnet"], "error": [4.25, 5.5], "seeds": [5, 10]})
    theirs = [cells(r) for r in df.to_markdown(index=False, tablefmt="pipe").splitlines()]
    ours = [cells(r) for r in md_table(df).splitlines()]
    assert ours[0] == theirs[0] and ours[2:] == theirs[2:]
