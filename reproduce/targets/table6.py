"""Table 6: Uout (uniform multiplicative noise, Eq. 15) in the dropout-(b) position, beta 0.1-0.5.

Uout's variance shift 3 / (3 + beta^2) is close to 1, so the paper finds it keeps the error at or
below the baseline. Networks of ``profile.table_networks``.
"""

from __future__ import annotations

from reproduce.targets._common import grid_specs
from reproduce.targets._grid_table import build_grid_table

TITLE = "Table 6: Uout in position b, beta 0-0.5, test error"
ARTEFACTS = ("table.csv", "paper_vs_ours.csv")


def runs(profile):
    return grid_specs(profile, "b", "uout", profile.table6_betas)


def build(ctx):
    return build_grid_table(ctx, table=6, placement="b", noise="uout",
                            values=ctx.profile.table6_betas, setting="uout_b", value_name="beta",
                            claim_id="table6_no_harm", primary_id="p6_uout")
