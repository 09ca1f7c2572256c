"""Markdown tables of the reproduction's results, reports and documentation pages.

:func:`md_table` writes what ``pandas.DataFrame.to_markdown`` writes in its GitHub ("pipe")
format, without that method's ``tabulate`` dependency, and with cells that stay in their
column whatever they hold.
"""

from __future__ import annotations

import math

__all__ = ["md_table"]


def _cell(value, floatfmt):
    if isinstance(value, float):
        return "" if math.isnan(value) else format(value, floatfmt)
    return str(value).replace("|", "\\|").replace("\n", " ")


def md_table(df, floatfmt=".4g"):
    """A DataFrame as a GitHub-flavoured Markdown table.

    A header row of the column names, a ``---`` rule and one row per record (the index is not
    written). Floats are formatted with ``floatfmt`` (a format spec, e.g. ``".2f"``) and NaN is
    an empty cell; in other cells ``|`` is escaped and line breaks become spaces, so every cell
    stays in its column.

    Args:
        df: a ``pandas.DataFrame``.
        floatfmt: the format spec of float cells.

    Returns:
        The table as one string, rows separated by ``\\n``.

    Example:

    >>> import pandas as pd
    >>> print(md_table(pd.DataFrame({"rate": [0.1, float("nan")], "layer": ["a|b", "c"]})))
    | rate | layer |
    |---|---|
    | 0.1 | a\\|b |
    |  | c |
    """
    columns = [_cell(str(c), floatfmt) for c in df.columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(v, floatfmt) for v in row) + " |"
              for row in df.itertuples(index=False)]
    return "\n".join(lines)
