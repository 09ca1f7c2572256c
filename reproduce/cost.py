"""What a plan costs: runs, epochs and GPU-hours from a per-network throughput table.

The table is ``reproduce/data/throughput.csv``: seconds per epoch of each network at a size on a
named device, with ``status`` ``measured`` (timed on that device) or ``estimate`` (not timed:
the ``basis`` column says how it was judged). The GPU-hour figure of a plan is

.. math:: \\text{GPU-hours} = \\frac{1}{3600} \\sum_{\\text{runs}} \\text{epochs}(r)\\,
          s_{\\text{epoch}}(\\text{net}(r))

over the training epochs only (the final shift measurement and BN adjustment of a run add a
few epochs' worth of inference) and is an estimate whenever one of its rows is.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

__all__ = ["throughput_table", "plan_cost", "format_cost"]

TABLE = Path(__file__).parent / "data" / "throughput.csv"


def throughput_table(path=TABLE):
    """``{(net, size): row}`` of the throughput table (``seconds_per_epoch`` as a float)."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {(r["net"], r["size"]): {**r, "seconds_per_epoch": float(r["seconds_per_epoch"])}
            for r in rows}


def _epochs(config):
    from varshift import train

    trainer = {k: v for k, v in config.items() if k != "subset"}
    return train.RunConfig.from_any(trainer).resolved()[1].epochs


def _size_name(size):
    return "paper" if size == {} else "small"


def plan_cost(specs, table=None):
    """Per (network, data set): runs, epochs and GPU-hours (``None`` without a table row)."""
    table = throughput_table() if table is None else table
    groups = defaultdict(lambda: {"runs": 0, "epochs": 0, "gpu_hours": 0.0, "row": None})
    for spec in specs:
        c = spec.config
        g = groups[(c["net"], c["data"])]
        epochs = _epochs(c)
        g["runs"] += 1
        g["epochs"] += epochs
        row = table.get((c["net"], _size_name(c["size"])))
        if row is None:
            g["gpu_hours"] = None
        elif g["gpu_hours"] is not None:
            g["row"] = row
            g["gpu_hours"] += epochs * row["seconds_per_epoch"] / 3600.0
    return dict(groups)


def format_cost(profile, specs, table=None):
    """The lines ``python -m reproduce plan`` prints."""
    groups = plan_cost(specs, table)
    lines = [f"profile {profile.name}: {len(specs)} training runs", "",
             f"{'network':<12} {'data':<14} {'runs':>5} {'epochs':>8} {'GPU-hours':>10}  basis"]
    total_h, estimate, devices = 0.0, False, set()
    for (net, data), g in sorted(groups.items()):
        row = g["row"]
        if g["gpu_hours"] is None:
            hours, basis = "n/a", "no throughput entry at this size (see the profile's budget note)"
            total_h = None
        else:
            hours = f"{g['gpu_hours']:.0f}"
            basis = f"{row['status']}: {row['seconds_per_epoch']:g} s/epoch on {row['device']}"
            estimate |= row["status"] != "measured"
            devices.add(row["device"])
            total_h = None if total_h is None else total_h + g["gpu_hours"]
        lines.append(f"{net:<12} {data:<14} {g['runs']:>5} {g['epochs']:>8} {hours:>10}  {basis}")
    epochs = sum(g["epochs"] for g in groups.values())
    lines.append(f"{'total':<27} {len(specs):>5} {epochs:>8} "
                 f"{'n/a' if total_h is None else f'{total_h:.0f}':>10}")
    if total_h is not None and groups:
        kind = "ESTIMATE (throughput not measured)" if estimate else "from measured throughput"
        lines += ["", f"GPU-hours: {total_h:,.0f} on {', '.join(sorted(devices))}, {kind}; "
                      "training epochs only."]
    elif profile.budget_note:
        lines += ["", profile.budget_note]
    return lines
