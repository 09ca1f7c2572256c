"""Table 4: a single dropout after all BN layers (before the classifier), ratios 0.1-0.5.

Dropout after the last BN cannot shift any BN layer's variance, so the paper finds it does not
hurt (and sometimes helps). Networks of ``profile.table_networks``; the baseline is the shared
no-dropout run.
"""

from __future__ import annotations

from reproduce.targets._common import grid_specs
from reproduce.targets._grid_table import build_grid_table

TITLE = "Table 4: one dropout after all BN layers, drop ratio 0-0.5, test error"
ARTEFACTS = ("table.csv", "paper_vs_ours.csv")


def runs(profile):
    return grid_specs(profile, "after_bn", "dropout", profile.table4_rates)


def build(ctx):
    return build_grid_table(ctx, table=4, placement="after_bn", noise="dropout",
                            values=ctx.profile.table4_rates, setting="after_bn",
                            value_name="drop_ratio",
                            claim_id="table4_no_harm", primary_id="p5_after_bn")
