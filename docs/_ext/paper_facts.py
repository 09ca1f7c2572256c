"""What the paper's own tables say, counted from ``reproduce/data/paper_results.csv``.

The pages quote the paper's results ("worse than the baseline in 7 of 8 cases") through
:func:`glue_facts`, which computes each statement from the transcribed tables, so no such count
is typed by hand. Table 3 has no baseline column: its baselines are the no-dropout rows of
Table 4 (the same networks and datasets, 5 seeds each).
"""

from __future__ import annotations

import pandas as pd
from myst_nb import glue

from reproduce.targets._common import paper_table

__all__ = ["table3_vs_baseline", "table4_vs_baseline", "table6_vs_baseline", "facts", "glue_facts"]

_DATASET = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}


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


def _case(row, value: str, x: bool = False) -> str:
    where = f"{row.network} {_DATASET.get(row.dataset, row.dataset)}"
    if x:
        where += f" at {row.x:g}"
    return f"{where} ({getattr(row, value):.2f} vs {row.baseline:.2f})"


def _cases(frame: pd.DataFrame, mask, value: str, x: bool = False) -> str:
    names = [_case(row, value, x) for row in frame[mask].itertuples()]
    if not names:
        return "none"
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def facts() -> dict[str, str]:
    """Every glued statement about the paper's Tables 3, 4 and 6, by name."""
    t3, t4, t6 = table3_vs_baseline(), table4_vs_baseline(), table6_vs_baseline()
    out = {"pf_t3_n": str(len(t3)), "pf_t4_n": str(len(t4)), "pf_t6_n": str(len(t6))}
    for col in ("a", "a_adjust", "b", "b_adjust"):
        worse = t3[col] > t3.baseline
        out[f"pf_t3_{col}_worse"] = str(int(worse.sum()))
        out[f"pf_t3_{col}_better_cases"] = _cases(t3, ~worse, col)
        # a gap under a tenth of a point is a tie: the paper gives means of 5 runs, no spread
        gaps = (t3.baseline - t3[col])[~worse]
        ties = _cases(t3, ~worse & (t3.baseline - t3[col] < 0.1), col)
        out[f"pf_t3_{col}_better_note"] = (
            "none" if not len(gaps) else out[f"pf_t3_{col}_better_cases"]
            + ("" if ties == "none" else
               f"; a gap under 0.1 points, as for {ties}, is a tie, since the paper reports "
               "means of 5 runs without their spread"))
    out["pf_t3_b_below_a"] = str(int((t3.b < t3.a).sum()))
    out["pf_t3_b_above_a_cases"] = _cases(t3.assign(baseline=t3.a), t3.b >= t3.a, "b")
    out["pf_t3_adjust_helps"] = str(int((t3.a_adjust < t3.a).sum() + (t3.b_adjust < t3.b).sum()))
    out["pf_t3_n2"] = str(2 * len(t3))
    for name, frame in (("t4", t4), ("t6", t6)):
        out[f"pf_{name}_worse"] = str(int((frame.error > frame.baseline).sum()))
        out[f"pf_{name}_better"] = str(int((frame.error < frame.baseline).sum()))
        out[f"pf_{name}_equal"] = str(int((frame.error == frame.baseline).sum()))
        out[f"pf_{name}_max_diff"] = f"{(frame.error - frame.baseline).abs().max():.2f}"
        worst = frame.assign(diff=frame.error - frame.baseline).nlargest(3, "diff")
        out[f"pf_{name}_worst_cases"] = _cases(worst, worst.index == worst.index, "error", x=True)
        best = frame.assign(diff=frame.error - frame.baseline).nsmallest(1, "diff")
        out[f"pf_{name}_best_case"] = _cases(best, best.index == best.index, "error", x=True)
    return out


def glue_facts() -> dict[str, str]:
    """Glue every statement of :func:`facts` (for ``{glue:text}`` in the page) and return them."""
    out = facts()
    for name, text in out.items():
        glue(name, text, display=False)
    return out
