"""A profile's budget in words: the table ``python -m reproduce plan`` prints and the budget
note whose figures (runs, minutes) :mod:`reproduce.cost` computes from the profile's plan.

A profile's ``budget_note`` may name figures in braces; :func:`budget_note` fills them in:

- ``{runs}``: the runs of the whole plan;
- ``{minutes}``: its wall minutes on 2 CPU cores (:func:`reproduce.cost.cpu_plan_minutes`
  with the profile's jobs, plus the theory targets and the report,
  ``reproduce.profiles.QUICK_FIXED_S``);
- ``{gpu_minutes}``, ``{key_runs}``, ``{key_minutes}``: the whole plan's and the key runs'
  (``reproduce.profiles.KEY_TARGETS``) on one H200 (:func:`reproduce.cost.gpu_plan_minutes`);
- ``{paper_ratio}``, ``{paper_epoch_seconds}``: per-epoch H200 seconds of the paper's sizes
  over the profile's, and those seconds per network.
"""

from __future__ import annotations

import string

from reproduce import cost
from reproduce.plan import resolve_size
from reproduce.profiles import KEY_TARGETS, PAPER_NAMES, QUICK_FIXED_S
from reproduce.registry import TARGETS, plan

__all__ = ["budget_note", "budget_figures", "format_cost"]


def _paper_epochs(profile):
    """``{net: (H200 s per epoch at the paper's size, at the profile's)}`` on 60,000 images
    at each network's paper batch size."""
    from varshift.nets import NETWORKS

    out = {}
    for net in profile.networks:
        batch = NETWORKS[net].paper_recipe.batch_size
        out[net] = (cost.gpu_epoch_seconds(net, "paper", 60000, batch),
                    cost.gpu_epoch_seconds(net, resolve_size(net, profile.size), 60000, batch))
    return out


def budget_figures(profile, names):
    """The figures ``names`` (a subset of those the module lists) of ``profile``'s plan."""
    names = set(names)
    specs = plan(profile, TARGETS)
    figures = {"runs": len(specs)}
    if "minutes" in names:
        figures["minutes"] = cost.cpu_plan_minutes(specs, profile.jobs, QUICK_FIXED_S)
    if "gpu_minutes" in names:
        figures["gpu_minutes"] = cost.gpu_plan_minutes(specs, profile.jobs)
    if names & {"key_runs", "key_minutes"}:
        key = plan(profile, KEY_TARGETS)
        figures.update(key_runs=len(key), key_minutes=cost.gpu_plan_minutes(key, profile.jobs))
    if names & {"paper_ratio", "paper_epoch_seconds"}:
        epochs = _paper_epochs(profile)
        figures["paper_ratio"] = (sum(p for p, _ in epochs.values())
                                  / sum(s for _, s in epochs.values()))
        figures["paper_epoch_seconds"] = ", ".join(
            f"{PAPER_NAMES[net]} {p:.2g}" for net, (p, _) in epochs.items())
    return figures


def budget_note(profile):
    """``profile.budget_note`` with the figures it names in braces computed
    (:func:`budget_figures`)."""
    note = profile.budget_note
    names = {field for _, field, _, _ in string.Formatter().parse(note) if field}
    return note.format(**budget_figures(profile, names)) if names else note


def _hours(hours):
    return f"{hours:,.0f}" if hours >= 10 else f"{hours:.2f}"


def format_cost(profile, specs, table=None):
    """The lines ``python -m reproduce plan`` prints."""
    groups = cost.plan_cost(specs, table)
    lines = [f"profile {profile.name}: {len(specs)} training runs", "",
             f"{'network':<12} {'data':<14} {'runs':>5} {'epochs':>8} {'GPU-hours':>10}  basis"]
    total_h, estimate, devices = 0.0, False, set()
    for (net, data), g in sorted(groups.items()):
        row = g["row"]
        if g["gpu_hours"] is None:
            hours, basis = "n/a", "no throughput entry at this size (see the profile's budget note)"
            total_h = None
        else:
            hours = _hours(g["gpu_hours"])
            basis = f"{row['status']}: {row['seconds_per_epoch']:g} s/epoch on {row['device']}"
            estimate |= row["status"] != "measured"
            devices.add(row["device"])
            total_h = None if total_h is None else total_h + g["gpu_hours"]
        lines.append(f"{net:<12} {data:<14} {g['runs']:>5} {g['epochs']:>8} {hours:>10}  {basis}")
    epochs = sum(g["epochs"] for g in groups.values())
    lines.append(f"{'total':<27} {len(specs):>5} {epochs:>8} "
                 f"{'n/a' if total_h is None else _hours(total_h):>10}")
    if total_h is not None and groups:
        kind = "ESTIMATE (throughput not measured)" if estimate else "from measured throughput"
        lines += ["", f"GPU-hours: {_hours(total_h)} on {', '.join(sorted(devices))}, {kind}; "
                      "training epochs only."]
    elif profile.budget_note:
        lines += ["", budget_note(profile)]
    return lines
