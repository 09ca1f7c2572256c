"""What the paper's own tables say, counted from ``reproduce/data/paper_results.csv``.

The pages quote the paper's results ("higher than the baseline in 7 of 8 cases") through
:func:`glue_facts`, which computes each statement from the transcribed tables, so no such count
is typed by hand. Table 3 has no baseline column: its baselines are the no-dropout rows of
Table 4 (the same networks and datasets, 5 seeds each).

**One tie rule for every comparison.** The paper reports means of 5 runs to two decimals and
no spread, so two of its errors that differ by less than :data:`TIE` percentage points are a
*tie*; every count and every "higher", "lower" of the pages is :func:`compare` of this rule
(:data:`TIE_RULE` says it in words, once, on the summary page).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

try:
    from myst_nb import glue
except ImportError:  # outside the site build: nothing to glue into
    def glue(name, variable, display=True):  # noqa: ARG001, A002
        return None

__all__ = ["TIE", "TIE_RULE", "compare", "paper_table", "table3_vs_baseline",
           "table4_vs_baseline", "table6_vs_baseline", "facts", "glue_facts"]

#: two of the paper's errors closer than this (percentage points) are a tie
TIE = 0.1
TIE_RULE = (f"a difference under {TIE:g} percentage points between two of the paper's errors is "
            "a tie (the paper reports means of 5 runs to two decimals, without their spread)")

_DATASET = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
_DATA = Path(__file__).resolve().parents[2] / "reproduce" / "data"


def paper_table(name: str = "paper_results.csv") -> pd.DataFrame:
    """A transcribed data file of the paper (``reproduce/data``), comments skipped."""
    path = _DATA / name
    if not path.is_file():  # an installed varshift: the data ship with the reproduce package
        import reproduce

        path = Path(reproduce.__file__).resolve().parent / "data" / name
    return pd.read_csv(path, comment="#")


def compare(value: float, reference: float) -> str:
    """``"higher"``, ``"lower"`` or ``"tie"``: ``value`` against ``reference`` under :data:`TIE`."""
    diff = round(float(value) - float(reference), 2)  # the paper's two decimals
    if diff >= TIE:
        return "higher"
    if diff <= -TIE:
        return "lower"
    return "tie"


def _with_baseline(table: int, settings: list[str]) -> pd.DataFrame:
    """Rows of ``table`` with ``settings``, one column per setting, plus Table 4's baseline."""
    paper = paper_table()
    base = paper[(paper.table == 4) & (paper.setting == "none")].set_index(["dataset", "network"])
    rows = paper[(paper.table == table) & paper.setting.isin(settings)]
    wide = rows.pivot_table(index=["dataset", "network", "x"], columns="setting",
                            values="error_pct").reset_index()
    pairs = zip(wide.dataset, wide.network, strict=True)
    wide["baseline"] = [base.loc[(d, n), "error_pct"] for d, n in pairs]
    return wide


def table3_vs_baseline() -> pd.DataFrame:
    """Table 3 (dropout-(a)/(b) at 0.5, before and after adjusting BN) beside Table 4's baseline."""
    return _with_baseline(3, ["a", "a_adjust", "b", "b_adjust"])


def table4_vs_baseline() -> pd.DataFrame:
    """Table 4 (one dropout after all BN layers) beside the no-dropout baseline."""
    return _with_baseline(4, ["after_bn"]).rename(columns={"after_bn": "error"})


def table6_vs_baseline() -> pd.DataFrame:
    """Table 6 (Uout in position (b)) beside the no-dropout baseline."""
    return _with_baseline(6, ["uout_b"]).rename(columns={"uout_b": "error"})


def _case(row, value: str, ref: str, x: bool) -> str:
    where = f"{row['network']} {_DATASET.get(row['dataset'], row['dataset'])}"
    if x:
        where += f" at {row['x']:g}"
    return f"{where}: {row[value]:.2f} vs {row[ref]:.2f}"


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _split(frame: pd.DataFrame, value: str, ref: str = "baseline", x: bool = False) -> dict:
    """Counts and cases of ``value`` higher than, tied with and lower than ``ref``."""
    sides = [compare(v, r) for v, r in zip(frame[value], frame[ref], strict=True)]
    out = {"n": len(frame)}
    for side in ("higher", "tie", "lower"):
        rows = [row for row, s in zip(frame.to_dict("records"), sides, strict=True) if s == side]
        out[side] = len(rows)
        out[f"{side}_cases"] = _join([_case(r, value, ref, x) for r in rows]) if rows else "none"
    return out


def _sentence(split: dict, ref: str, noun: str = "cases", cases=("tie", "lower")) -> str:
    """``higher than <ref> in 6 of 8 cases, a tie in 1 (...) and lower in 1 (...)``: every
    part of the tie rule's three, the ones named in ``cases`` with their cases."""
    parts = []
    for side, words in (("higher", f"higher than {ref} in"), ("tie", "a tie in"),
                        ("lower", "lower in")):
        k = split[side]
        text = f"{words} {k}" + (f" of {split['n']} {noun}" if side == "higher" else "")
        if k and side in cases:
            text += f" ({split[f'{side}_cases']})"
        parts.append(text)
    return f"{parts[0]}, {parts[1]} and {parts[2]}"


def facts() -> dict[str, str]:
    """Every glued statement about the paper's Tables 3, 4 and 6, by name.

    ``pf_<comparison>`` is a whole clause ("higher than the baseline in 7 of 8 cases, a tie in
    0 and lower in 1 (WRN CIFAR-10: 3.71 vs 3.97)"); ``pf_<comparison>_<side>`` its counts
    (``higher``, ``tie``, ``lower``) and ``pf_<comparison>_<side>_cases`` its cases.
    """
    t3, t4, t6 = table3_vs_baseline(), table4_vs_baseline(), table6_vs_baseline()
    out = {"pf_t3_n": str(len(t3)), "pf_t4_n": str(len(t4)), "pf_t6_n": str(len(t6)),
           "pf_t3_n2": str(2 * len(t3)), "pf_tie": f"{TIE:g}", "pf_tie_rule": TIE_RULE}
    comparisons = {
        # name: (frame, value, reference, reference in words, noun, with x, cases named)
        "t3_a": (t3, "a", "baseline", "the baseline", "cases", False, ("tie", "lower")),
        "t3_a_adjust": (t3, "a_adjust", "baseline", "the baseline", "cases", False,
                        ("tie", "lower")),
        "t3_b": (t3, "b", "baseline", "the baseline", "cases", False, ("tie", "lower")),
        "t3_b_adjust": (t3, "b_adjust", "baseline", "the baseline", "cases", False,
                        ("tie", "lower")),
        "t3_b_vs_a": (t3, "b", "a", "dropout-(a)'s", "cases", False, ("higher", "tie")),
        "t4": (t4, "error", "baseline", "the baseline", "settings", True, ()),
        "t6": (t6, "error", "baseline", "the baseline", "settings", True, ()),
    }
    for name, (frame, value, ref, words, noun, x, cases) in comparisons.items():
        split = _split(frame, value, ref, x)
        out[f"pf_{name}"] = _sentence(split, words, noun, cases)
        for side in ("higher", "tie", "lower"):
            out[f"pf_{name}_{side}"] = str(split[side])
            out[f"pf_{name}_{side}_cases"] = split[f"{side}_cases"]
    # Adjust BN against the same network as trained, (a) and (b) together
    adj = [compare(t3[f"{p}_adjust"].iloc[i], t3[p].iloc[i]) for p in ("a", "b")
           for i in range(len(t3))]
    out["pf_t3_adjust_lower"] = str(adj.count("lower"))
    out["pf_t3_adjust_tie"] = str(adj.count("tie"))
    out["pf_t3_adjust_higher"] = str(adj.count("higher"))
    for name, frame in (("t4", t4), ("t6", t6)):
        out[f"pf_{name}_max_diff"] = f"{(frame.error - frame.baseline).abs().max():.2f}"
        diff = frame.assign(diff=frame.error - frame.baseline)
        worst = diff[[compare(e, b) == "higher" for e, b in zip(diff.error, diff.baseline,
                                                                 strict=True)]]
        best = diff[[compare(e, b) == "lower" for e, b in zip(diff.error, diff.baseline,
                                                               strict=True)]]
        out[f"pf_{name}_worst_cases"] = _join([_case(r, "error", "baseline", True) for r in
                                               worst.nlargest(3, "diff").to_dict("records")]) \
            if len(worst) else "none"
        out[f"pf_{name}_best_case"] = _join([_case(r, "error", "baseline", True) for r in
                                             best.nsmallest(1, "diff").to_dict("records")]) \
            if len(best) else "none"
        out[f"pf_{name}_extremes"] = (
            (f"The largest increases are {out[f'pf_{name}_worst_cases']}"
             if len(worst) else "No setting's error is higher than the baseline's")
            + (f"; the largest gain is {out[f'pf_{name}_best_case']}." if len(best) else
               "; none is lower."))
    return out


def glue_facts() -> dict[str, str]:
    """Glue every statement of :func:`facts` (for ``{glue:text}`` in the page) and return them."""
    out = facts()
    for name, text in out.items():
        glue(name, text, display=False)
    return out
