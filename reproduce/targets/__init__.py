"""One module per paper artefact (see :mod:`reproduce.registry`), and the pieces they share.

A target ``reproduce/targets/<name>.py`` builds its run grids, reads its records and judges
its claims with the helpers re-exported here (defined in ``_common``): :func:`baseline_specs`,
:func:`grid_specs` and :func:`fig4_specs` (the usual grids, so targets that read the same runs
ask for identical configurations), :func:`test_error` and :func:`collect` (record accessors),
:func:`decide` and :func:`check` (claims judged under the profile), :func:`paper_table` and
:func:`paper_effects` (the paper's own numbers).
"""

from reproduce.targets._common import (
    SMOKE_NOTE,
    baseline_specs,
    by_seed,
    check,
    collect,
    decide,
    fig4_specs,
    grid_specs,
    mean_std,
    network_claim,
    networks_claim,
    paper_data_for,
    paper_effects,
    paper_table,
    seed_effect,
    seed_std,
    shift_table,
    summarise,
    test_error,
    write_csv,
)

__all__ = ["fig4_specs", "baseline_specs", "grid_specs", "collect", "summarise", "test_error",
           "shift_table", "write_csv", "paper_table", "mean_std", "seed_std", "paper_data_for",
           "by_seed", "decide", "check", "network_claim", "networks_claim", "seed_effect",
           "paper_effects", "SMOKE_NOTE"]
