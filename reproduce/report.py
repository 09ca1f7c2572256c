"""``report.md`` and ``verdicts.csv`` from the targets' saved results."""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path

from reproduce import plotting
from reproduce._io import atomic_write_text, read_json
from reproduce.claims import (
    ALPHA,
    CHECK,
    FAMILIES,
    POWER_ALPHA,
    PRIMARY,
    SECONDARY,
    VERDICTS,
    Claim,
    adjust_families,
    claims_hash,
    load_deltas,
    untested,
)
from reproduce.registry import TARGETS, load_result

__all__ = ["write_report", "setup_differences", "closing_note", "summary_lines",
           "VERDICT_COLUMNS", "CHECK_COLUMNS", "family_lines", "regime_lines", "design_status",
           "EXPLORATORY", "CONFIRMATORY", "check_inputs", "ReportInputError"]

CONFIRMATORY, EXPLORATORY = "confirmatory", "exploratory"

THEORY_TARGETS = {"eq8", "eq14", "eq15"}

#: columns of ``verdicts.csv`` (the primary and secondary claims, each family Holm-adjusted;
#: ``ci_low``/``ci_high`` are the one-sided bounds at ``level_low``/``level_high``, the levels of
#: their Holm steps ``step_low``/``step_high``)
VERDICT_COLUMNS = ("target", "id", "claim", "family", "design", "source", "verdict", "reason",
                   "effect", "ci_low", "ci_high", "level_low", "level_high", "step_low",
                   "step_high", "margin", "direction", "unit", "n", "agree", "power", "p_holm",
                   "p_holm_fails", "evidence")
#: columns of ``checks.csv`` (the theory checks: they guard the code, they are not findings)
CHECK_COLUMNS = ("target", "id", "claim", "family", "source", "verdict", "reason", "effect",
                 "ci_low", "ci_high", "margin", "direction", "unit", "n", "evidence")
CONVERGED_REFERENCE = Path(__file__).resolve().parent / "data" / "converged_reference.csv"


class ReportInputError(ValueError):
    """A file the report reads is torn or not what ``run`` writes; one line naming it."""


_NUMBER = (int, float)
_OPTIONAL_NUMBER = (int, float, type(None))
#: what the report reads from each file: field -> (allowed types, required)
RESULT_FIELDS = {"title": (str, True), "verdicts": (list, True), "markdown": (str, False),
                 "artefacts": (list, False)}
VERDICT_FIELDS = {"claim": (str, True), "verdict": (str, True), "unit": (str, True),
                  "evidence": (str, True), "n": (int, True), "family": ((str, type(None)), False),
                  "direction": ((str, type(None)), False), "effect_is": ((str, type(None)), False),
                  **{k: (_OPTIONAL_NUMBER, False) for k in ("effect", "ci_low", "ci_high",
                                                            "margin", "p_holds", "p_fails")}}
MANIFEST_FIELDS = {"command": (str, False), "git": ((dict, type(None)), False),
                   "data": (list, False), "runs": (dict, False),
                   "total_run_time_s": (_NUMBER, False), "wall_time_s": (_OPTIONAL_NUMBER, False),
                   "versions": (dict, False)}
PROVENANCE_FIELDS = {"commit": ((str, type(None)), False), "dirty": ((bool, type(None)), False)}
#: columns of ``fig4/table.csv`` the regime section reads
REGIME_COLUMNS = ("net", "data", "rate", "test_error_mean", "test_error_std", "n_seeds")


def _type_names(types):
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join("null" if t is type(None) else t.__name__ for t in types)


def _check_fields(path, obj, fields, where=""):
    if not isinstance(obj, dict):
        raise ReportInputError(f"{path}: {where or 'the file'} must be a JSON object; received "
                               f"{type(obj).__name__}")
    for name, (types, required) in fields.items():
        if name not in obj:
            if required:
                raise ReportInputError(f"{path}: {where}field {name!r} is missing; expected "
                                       f"{_type_names(types)}")
            continue
        value = obj[name]
        if isinstance(value, bool) and bool not in (types if isinstance(types, tuple)
                                                    else (types,)):
            value = object()  # a bool is not a number here
        if not isinstance(value, types):
            raise ReportInputError(f"{path}: {where}field {name!r} is {obj[name]!r:.60}; "
                                   f"expected {_type_names(types)}")


def _read_object(path):
    try:
        return read_json(path)
    except (OSError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ReportInputError(f"{path}: unreadable or torn JSON ({reason}); run `python -m "
                               "reproduce run` again to rewrite it") from None


def check_inputs(out_dir, targets=TARGETS, profile=None):
    """Read and check every file :func:`write_report` reads, before it writes anything.

    ``manifest.json`` and ``provenance.json`` (where present) must be JSON objects with the
    fields the report shows; each target's ``result.json`` (where present) a JSON object with
    a ``title`` and a list of verdict rows (:data:`VERDICT_FIELDS`); ``fig4/table.csv`` (where
    the profile's report shows the regime) a CSV with :data:`REGIME_COLUMNS`.

    Raises:
        ReportInputError: the first file that is torn or not what ``run`` writes, in one line
            naming the file, the field and what was expected.
    """
    out_dir = Path(out_dir)
    for name, fields in (("manifest.json", MANIFEST_FIELDS), ("provenance.json", PROVENANCE_FIELDS)):
        if (out_dir / name).is_file():
            obj = _read_object(out_dir / name)
            _check_fields(out_dir / name, obj, fields)
            if name == "manifest.json" and not all(isinstance(d, dict) for d in obj.get("data", [])):
                raise ReportInputError(f"{out_dir / name}: field 'data' must be a list of "
                                       "objects")
    for target in targets:
        path = out_dir / target / "result.json"
        if not path.is_file():
            continue
        res = _read_object(path)
        _check_fields(path, res, RESULT_FIELDS)
        if not all(isinstance(a, str) for a in res.get("artefacts", [])):
            raise ReportInputError(f"{path}: field 'artefacts' must be a list of file names")
        for i, row in enumerate(res["verdicts"]):
            _check_fields(path, row, VERDICT_FIELDS, f"verdict {i}: ")
            if row["verdict"] not in VERDICTS:
                raise ReportInputError(f"{path}: verdict {i}: field 'verdict' is "
                                       f"{row['verdict']!r:.60}; expected one of {VERDICTS}")
    table = out_dir / "fig4" / "table.csv"
    if profile is not None and profile.name != "smoke" and table.is_file():
        import pandas as pd

        try:
            columns = set(pd.read_csv(table, nrows=1).columns)
        except Exception as err:  # any parser error of a torn or foreign file
            raise ReportInputError(f"{table}: unreadable CSV ({type(err).__name__})") from None
        missing = [c for c in REGIME_COLUMNS if c not in columns]
        if missing:
            raise ReportInputError(f"{table}: lacks column(s) {', '.join(missing)}; expected "
                                   f"{', '.join(REGIME_COLUMNS)}")


def _verdict_rows(out_dir, targets):
    rows, results = [], {}
    for name in targets:
        res = load_result(out_dir, name)
        results[name] = res
        family = CHECK if name in THEORY_TARGETS else ""
        if res is None:
            rows.append({"target": name, **untested(Claim("(target not built)", "above", 0.0, "",
                                                          family=family),
                                                    f"run `python -m reproduce run {name}`")})
            continue
        for v in res.get("verdicts", []):
            rows.append(_numbers({"target": name, **v, "family": v.get("family") or family}))
    return adjust_families(rows), results


def _numbers(row):
    """Numbers of a row read back from JSON, where NaN and infinities are stored as null: a
    one-sample interval is (-inf, inf), anything else missing is NaN."""
    wide = int(row.get("n") or 0) == 1
    for key, fill in (("effect", math.nan), ("ci_low", -math.inf if wide else math.nan),
                      ("ci_high", math.inf if wide else math.nan), ("margin", math.nan),
                      ("p_holds", math.nan), ("p_fails", math.nan), ("level_low", math.nan),
                      ("level_high", math.nan)):
        row[key] = fill if row.get(key) is None else float(row[key])
    return row


def _num(x, digits=3, margin=None):
    """A number rounded to what it means: to a tenth of the claim's margin where there is one
    (never ``-7.5e-05`` or ``-0.000``), else to ``digits`` significant digits; NaN is empty."""
    x = float(x)
    if math.isnan(x):
        return ""
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if margin is not None and math.isfinite(float(margin)) and float(margin) != 0.0:
        decimals = max(0, 1 - math.floor(math.log10(abs(float(margin)))))
        text = f"{x:.{decimals}f}"
        return text[1:] if re.fullmatch(r"-0\.?0*", text) else text
    return f"{x:.{digits}g}"


def _interval(r):
    """``effect [low, high]``, or ``not measured`` for a row without numbers."""
    if math.isnan(float(r["effect"])):
        return "not measured"
    m = r.get("margin")
    return (f"{_num(r['effect'], margin=m)} [{_num(r['ci_low'], margin=m)}, "
            f"{_num(r['ci_high'], margin=m)}]")


def _p(x):
    x = float(x) if x is not None else math.nan
    return "" if math.isnan(x) else ("< 0.0001" if x < 1e-4 else f"{x:.4f}")


def _margin_text(r):
    side = {"above": ">", "below": "<", "within": "+-"}.get(r.get("direction"), "")
    return f"{side} {_num(r['margin'])} {r['unit']}".strip()


def _pct(x):
    return "" if x is None or not math.isfinite(float(x)) else f"{100 * float(x):.0f}%"


def _claim_table(rows, checks=False, power=None):
    """The Markdown table of claims: claim, effect [interval at the verdict's level] on its
    scale, margin, k of n, power (primary claims), verdict and the reason in words."""
    if checks:
        head = "| target | claim | verdict | effect [95% interval] | margin | n | reason |"
    else:
        head = ("| claim | effect [interval at the verdict's level] | margin | k of n | "
                + ("power | " if power is not None else "") + "verdict | reason |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        text = r["claim"].replace("|", "\\|")
        reason = str(r.get("reason") or "").replace("|", "\\|")
        if checks:
            lines.append(f"| [{r['target']}](#{r['target']}) | {text} | **{r['verdict']}** | "
                         f"{_interval(r)} | {_margin_text(r)} | {r['n']} | {reason} |")
            continue
        pw = ""
        if power is not None:
            pw = _pct((power.get(r.get("id")) or {}).get("power")) or "n/a"
            pw += " | "
        lines.append(f"| {text} ([{r['target']}](#{r['target']})) | {_interval(r)} "
                     f"{r['unit']} | {_margin_text(r)} | {r.get('agree', '')} | {pw}"
                     f"**{r['verdict']}** | {reason} |")
    return lines


def summary_lines(rows):
    """Counts per verdict, in :data:`reproduce.claims.VERDICTS` order."""
    counts = {v: sum(r["verdict"] == v for r in rows) for v in VERDICTS}
    return ", ".join(f"{n} {v}" for v, n in counts.items())


def family_lines(rows):
    """Counts per verdict within each family: ``primary: 6 (4 holds, ...)``."""
    out = []
    for fam in FAMILIES:
        sub = [r for r in rows if r.get("family") == fam]
        if sub:
            out.append(f"{fam}: {len(sub)} ({summary_lines(sub)})")
    other = [r for r in rows if r.get("family") not in FAMILIES]
    if other:
        out.append(f"targets not built: {len(other)}")
    return "; ".join(out)


def _split(rows):
    checks = [r for r in rows if r.get("family") == CHECK]
    return [r for r in rows if r.get("family") != CHECK], checks


def _count(n):
    return "all the" if n is None else f"{n:,}"


def _networks_text(profile):
    """Each network's size and recipe as the profile trains it."""
    from reproduce.profiles import PAPER_NAMES

    size = profile.size
    parts = []
    for net in profile.networks:
        if isinstance(size, dict):
            kw = size.get(net, size)
            shape = ", ".join(f"{k} {v}" for k, v in kw.items()) or "the paper's size"
        else:
            shape = f"varshift.nets.{size.upper()}_SIZES" if size == "small" else f"size {size}"
        recipe = {**profile.recipe, **profile.net_recipe.get(net, {})}
        epochs = recipe.get("epochs", "?")
        parts.append(f"{PAPER_NAMES.get(net, net)} ({shape}; {epochs} "
                     f"epoch{'' if epochs == 1 else 's'})")
    common = {k: v for k, v in profile.recipe.items()
              if k not in ("epochs", "warmup_epochs") and v not in ([], (), None, "")}
    return (", ".join(parts) + f", the {profile.recipe_kind!r} recipe with "
            + ", ".join(f"{k} {v}" for k, v in common.items())
            + (", a linear warm-up of an eighth of the epochs" if profile.net_recipe else
               f", a warm-up of {profile.recipe.get('warmup_epochs', 0):g} epochs"))


def setup_differences(profile):
    """One paragraph: how this profile's training setup differs from the paper's."""
    if profile.name == "paper":
        return ("Paper profile: the paper's networks (varshift.nets.DEFAULT_SIZES), the bearpaw "
                "CIFAR recipes (varshift.train.RECIPES), CIFAR-10 and CIFAR-100, "
                f"{profile.seeds} seeds. Remaining differences: Keras instead of PyTorch (BN "
                "momentum set to PyTorch's 0.1, but Keras stores the biased batch variance), "
                "final-epoch errors (the paper does not say final or best), and the paper's "
                "unstated details (its exact recipes, number of statistics passes).")
    data = ", ".join(profile.data)
    sub = profile.subset or {}
    if sub.get("train_draw") == "per_seed":
        subset = (f" (class-stratified subsets: {sub['n_train']} training images drawn with each "
                  f"run's own seed, and {_count(sub.get('n_test'))} test images outside the "
                  f"{_count(sub['test_exclude']['n_test'])} an earlier design read)"
                  if sub.get("test_exclude") else
                  f" ({sub['n_train']} training images drawn with each run's own seed)")
    else:
        subset = (f" (a fixed class-stratified subset: {sub['n_train']} training and "
                  f"{sub['n_test']} test images)" if sub else "")
    return (f"Paper: CIFAR-10/100, full-size networks (PreResNet-164, ResNeXt-29 8x64d, WRN-28-10, "
            f"DenseNet-BC-100), 164-300 epochs, 5 seeds. Here: {data}{subset}, "
            + _networks_text(profile) + ", " + (
                f"{profile.seeds} seed(s) for every setting (compared settings share them)"
                if profile.seeded is None else
                f"{profile.seeds} seed(s) for the no-dropout baseline and "
                f"{', '.join(f'{p} {r:g}' for p, r in profile.seeded)} and one seed elsewhere")
            + ". Only the direction of the effects can be compared with the paper, not the "
            "error levels.")


HOLM_NOTE = (
    "How a verdict is decided. Each claim's effect has one sample per seed (a claim about \"the "
    "networks\" averages the per-network effect over the networks of each seed, so n is the "
    "number of seeds); error claims are log ratios log(error / error of the control), with the "
    "margin log(1 + delta) of one delta per kind of claim (superiority {sup:.0%}, "
    "non-inferiority {ni:.0%}; `reproduce/claims.toml`). Each claim gets two one-sided t-tests "
    "(scipy's `ttest_1samp`): one whose rejection means `holds`, one whose rejection means "
    "`does not hold`. Within each family (primary, secondary) each set is adjusted by Holm's "
    "step-down method (statsmodels' `multipletests`) at {alpha:g}: the chance of any wrong "
    "`holds` in a family is at most {alpha:g}, of any wrong `does not hold` at most {alpha:g}. "
    "The interval shown is the one the verdict uses: each bound is the one-sided t-bound at "
    "the level of its claim's Holm step (1 - {alpha:g} / (m - k + 1) at step k of m; "
    "`level_low`, `level_high` and `step_low`, `step_high` in `verdicts.csv`), so a bound "
    "beyond the margin is a rejection unless Holm's step-down stopped at an earlier claim, "
    "which the reason then names. `k of n`: the seeds whose own effect lies on the claimed "
    "side of the margin. Power: the chance that a claim is decided at this profile's seeds, at "
    "the pilot's effect and spread (one-sided {palpha:.5f}, Holm's strictest step; `python -m "
    "reproduce power`). The theory checks guard the code and are listed apart (`checks.csv`), "
    "not adjusted; a check \"for every cell\" is judged on its worst cell.")


def design_status(out_dir, profile, targets=TARGETS):
    """``(design, why)``: ``"confirmatory"`` when every run record the targets rest on was
    trained under this claims file (its SHA-256 in the record) and the profile is not the
    pilot; else ``"exploratory"``, with the reason in words."""
    from reproduce.registry import plan
    from reproduce.store import RunStore

    now = claims_hash()
    if profile.name == "pilot":
        return EXPLORATORY, ("these are the pilot's records: its seeds, networks and test "
                             "images were read while the claims were written")
    if profile.name == "smoke":
        return EXPLORATORY, "the smoke profile tests the plumbing; it decides nothing"
    store = RunStore(out_dir)
    seen = []
    for spec in plan(profile, targets):
        rec = store.find(spec)
        if rec is not None:
            seen.append(rec.get("claims_sha256"))
    if not seen:
        return CONFIRMATORY, f"no training runs; claims file sha256 {now[:12]}"
    missing = sum(h is None for h in seen)
    other = sorted({h for h in seen if h is not None and h != now})
    if missing or other:
        bits = []
        if missing:
            bits.append(f"{missing} of {len(seen)} run records name no claims file")
        if other:
            bits.append(f"{sum(h in other for h in seen)} of {len(seen)} name another claims "
                        f"file (sha256 {', '.join(h[:12] for h in other)})")
        return EXPLORATORY, ("; ".join(bits) + f", not this one (sha256 {now[:12]}): the "
                             "claims may have been written after their data was read")
    return CONFIRMATORY, (f"every one of the {len(seen)} run records was trained under this "
                          f"claims file (sha256 {now[:12]}), fixed before the runs")


def _label(rows, design):
    for r in rows:
        if r.get("family") == PRIMARY:
            r["design"] = design
        elif r.get("family") == SECONDARY:
            r["design"] = EXPLORATORY
    return rows


def _power(profile, pilot):
    """``{claim id: power row}`` at ``profile``'s seeds from the pilot's rows (``None``: no
    power analysis: smoke, or no pilot records)."""
    from reproduce.power import power_table
    from reproduce.profiles import get_profile

    if profile.name == "smoke" or not pilot:
        return None
    return {r["id"]: r for r in power_table(pilot, profile.seeds, get_profile("paper").seeds)}


def _power_lines(power, profile):
    if power is None:
        return ["Power: not computed (" + ("the smoke profile" if profile.name == "smoke" else
                                           "no pilot records in docs/results/pilot") + ").", ""]
    paper = next(iter(power.values())).get("paper_seeds") if power else None
    text = ", ".join(f"{k} {_pct(v.get('power_paper'))}" for k, v in power.items())
    need = [v["seeds_needed"] for v in power.values()]
    short = [f"{k} ({_pct(v['power'])}, needs {v['seeds_needed'] or '> 1000'})"
             for k, v in power.items() if v["power"] < 0.8]
    return [f"Power at this profile's {profile.seeds} seeds, at the pilot's effect and spread "
            "(the pilot ran Tables 4 and 6 on WRN only, so p5_after_bn's and p6_uout's spread "
            "is one network's): "
            + ", ".join(f"{k} {_pct(v['power'])}" for k, v in power.items())
            + ". Seeds for 80% power in every primary claim: "
            + ("more than 1000" if None in need else str(max(need)))
            + (f"; short of 80%: {', '.join(short)}" if short else "")
            + f". At the paper profile's {paper} seeds the power would be: {text}.", ""]


def _write_csv(path, rows, columns):
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if isinstance(r.get(k), float) and math.isnan(r[k]) else r.get(k))
                         for k in columns})
    atomic_write_text(path, buf.getvalue())


def _family_lines(profile, design, why, primary, secondary, power):
    """The report's opening: the design, the primary family's table and power, the secondary
    family's table."""
    return [f"# Reproduction report: profile `{profile.name}`", "",
            f"{profile.description}.", "",
            f"**Design: {design}.** {why[0].upper() + why[1:]}."
            + ("" if design == CONFIRMATORY else " Every verdict below is exploratory."), "",
            f"## Primary claims ({design})", "",
            "The paper's six headline claims, each about the networks (per seed, the mean over "
            "the networks of the per-network effect); Holm's step-down over these six only.", "",
            *_claim_table(primary, power=power or {}), "", *_power_lines(power, profile),
            "## Secondary claims (exploratory)", "",
            "Per network and mechanism claims, Holm-adjusted within their own family; they are "
            "exploratory whatever their verdict.", "", *_claim_table(secondary), ""]


def _pilot_lines(pilot):
    """The pilot's primary verdicts under the current claims, apart and labelled exploratory."""
    pilot_primary = [r for r in pilot if r.get("family") == PRIMARY]
    return ["## The pilot's verdicts under the new design (exploratory)", "",
            "The pilot (profile `pilot`: quick's first design, seeds 0-4, the 4,000 test "
            "images every pilot run read, Tables 4 and 6 on WRN only; records in "
            "`docs/results/pilot`) judged with these claims. The claims were written "
            "after its data was read, so these verdicts are exploratory; they are the "
            "power analysis' input, not evidence. Power: the pilot's own, at its 5 seeds.", "",
            *_claim_table(pilot_primary, power={r["id"]: _power_pilot(pilot, r)
                                                for r in pilot_primary}), ""]


def write_report(out_dir, profile, targets=TARGETS, pilot=None):
    """Write ``report.md``, ``verdicts.csv`` (primary and secondary claims), ``checks.csv``
    (theory checks) and ``forest.png``/``.svg`` in ``out_dir``; return all rows (claims, then
    checks).

    ``pilot``: the pilot's verdict rows (:func:`reproduce.power.pilot_rows`, read from
    ``docs/results/pilot`` when ``None``; ``[]`` for none): the power of each primary claim, and
    the pilot's verdicts under the current claims, shown apart as exploratory.

    Every file read is checked first (:func:`check_inputs`): a torn or foreign one raises
    :class:`ReportInputError` before anything is written.
    """
    out_dir = Path(out_dir)
    check_inputs(out_dir, targets, profile)
    rows, results = _verdict_rows(out_dir, targets)
    design, why = design_status(out_dir, profile, targets)
    rows = _label(rows, design)
    if pilot is None and profile.name != "smoke":
        from reproduce.power import pilot_rows

        pilot = rows if profile.name == "pilot" else pilot_rows()
    power = _power(profile, pilot)
    for r in rows:
        r["power"] = (power or {}).get(r.get("id"), {}).get("power", math.nan) \
            if r.get("family") == PRIMARY else math.nan
    claims, checks = _split(rows)
    primary = [r for r in claims if r.get("family") == PRIMARY]
    secondary = [r for r in claims if r.get("family") != PRIMARY]
    _write_csv(out_dir / "verdicts.csv", claims, VERDICT_COLUMNS)
    _write_csv(out_dir / "checks.csv", checks, CHECK_COLUMNS)
    plotting.forest(claims, out_dir, profile.name, list(profile.data))
    deltas = load_deltas()
    lines = _family_lines(profile, design, why, primary, secondary, power)
    if pilot and profile.name not in ("pilot", "smoke"):
        lines += _pilot_lines(pilot)
    lines += ["## Summary", "",
              f"{len(claims)} claims: {summary_lines(claims)} ({family_lines(claims)}); and "
              f"{len(checks)} theory checks: {summary_lines(checks)}.", "",
              HOLM_NOTE.format(alpha=ALPHA, sup=deltas["superiority"][0],
                               ni=deltas["non_inferiority"][0],
                               palpha=POWER_ALPHA), "",
              "The forest plot shows every claim's effect in units of its margin.", "",
              "![forest plot of the claims](forest.png)", ""]
    lines += _manifest_lines(out_dir)
    from reproduce.budget import budget_note

    lines += ["", f"Budget: {budget_note(profile)}", "",
              "## Setup differences from the paper", "", setup_differences(profile), "",
              *regime_lines(out_dir, profile),
              "Table 5 (ImageNet, ResNet-200 / ResNeXt-101 / SENet with one dropout 0.2 after all "
              "BN) is out of reach on one machine and is not reproduced; its numbers are kept in "
              "`reproduce/data/paper_results.csv` for reference.", "",
              "Evidence of each claim: in its target's section below and in `verdicts.csv`.", "",
              "## Theory checks", "",
              "Formula against Monte Carlo and against what Keras stores; identities of the "
              "implementation. They guard the code and are not counted as findings.", "",
              *_claim_table(checks, checks=True), ""]
    by_target = {}
    for r in rows:
        by_target.setdefault(r["target"], []).append(r)
    for name in targets:
        lines += _target_section(out_dir, profile, name, results[name], by_target.get(name, []))
    atomic_write_text(out_dir / "report.md", "\n".join(lines) + "\n")
    return claims + checks


def _power_pilot(pilot, row):
    """The pilot's own (post hoc) power of ``row`` at its seeds."""
    from reproduce.power import power_table

    (out,) = power_table([row], len(row["samples"])) or [{"power": math.nan}]
    return out


def _trained_commit(out_dir, manifest):
    """The commit the runs were trained at: the published records' provenance, else the
    manifest of the invocation that trained them (not a later ``--cached-only`` rebuild)."""
    prov = out_dir / "provenance.json"
    if prov.is_file():
        p = read_json(prov)
        return p.get("commit") or "unknown", bool(p.get("dirty")), "the published records' provenance"
    git = manifest.get("git") or {}
    if "--cached-only" in str(manifest.get("command", "")):
        return "not recorded", False, "a rebuild from cached runs"
    return git.get("commit", "unknown"), bool(git.get("dirty")), "this run"


def _public_command(command):
    """The command without machine paths (``--out``/``--data-dir`` values)."""
    return re.sub(r"\s--(out|data-dir|dest)(=|\s+)\S+", "", str(command)).strip()


def _manifest_lines(out_dir):
    if not (out_dir / "manifest.json").is_file():
        return []
    manifest = read_json(out_dir / "manifest.json")
    commit, dirty, where = _trained_commit(out_dir, manifest)
    data = ", ".join(f"{d.get('name')} ({d.get('source', 'source not recorded')})"
                     for d in manifest.get("data", []))
    return [
        f"- command: `{_public_command(manifest.get('command', ''))}`",
        f"- runs trained at commit: `{commit}`" + (" (uncommitted changes)" if dirty else "")
        + f" ({where})",
        f"- data: {data}",
        f"- seeds: {manifest.get('seeds')}; training runs: {len(manifest.get('runs', {}))}; "
        f"sum of run times: {manifest.get('total_run_time_s', 0) / 60:.1f} min; "
        f"last invocation wall time: {(manifest.get('wall_time_s') or 0) / 60:.1f} min",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in manifest.get("versions", {}).items()),
    ]


def _reference(path=None):
    """``{(net, data): (epochs, test_error)}`` of the converged reference, or ``{}``."""
    path = Path(path or CONVERGED_REFERENCE)
    if not path.is_file():
        return {}
    import pandas as pd

    ref = pd.read_csv(path, comment="#")
    return {(r.net, r.data): (int(r.epochs), float(r.test_error)) for r in ref.itertuples()}


def _mean(values):
    return sum(values) / len(values)


def _log_ratio(row, base, column):
    return math.log(float(row[column]) / float(base[column]))


def _longer_lines(profile, rows=None):
    """``[gap sentence, table lines...]`` of quick's runs trained :data:`converged.FACTOR` times
    longer (``reproduce/data/converged_quick.csv``), or ``[]`` where there are none."""
    from reproduce import converged
    from reproduce.profiles import PAPER_NAMES

    if profile.name != "quick":
        return []
    rows = [r for r in (converged.read_quick() if rows is None else rows)
            if r.get("quick_test_error") not in ("", None)]
    if not rows:
        return []
    by = {}
    for r in rows:
        by.setdefault((r["net"], r["placement"], r["noise"], float(r["value"])), []).append(r)
    names = {"none": "no dropout", "a": "dropout-(a) {v:g}", "after_bn": "dropout {v:g} after "
             "the last BN", "b": "Uout (b) beta {v:g}"}
    lines = ["", f"The same runs trained {converged.FACTOR} times longer (the first "
             f"{len(by[next(iter(by))])} seeds; only the epochs differ; "
             "`reproduce/data/converged_quick.csv`, `python -m reproduce.converged`). Log ratio: "
             "log(error of the setting / the same seed's no-dropout error), mean over seeds.", "",
             "| network | setting | seeds | test error (%) | same, trained longer (%) | training "
             "error, inference mode, longer (%) | log ratio | same, longer |",
             "|---|---|---|---|---|---|---|---|"]
    gaps, shifts = [], []
    for (net, placement, _noise, value), rs in by.items():
        base = {r["seed"]: r for r in by.get((net, "none", "dropout", 0.0), [])}
        q, t, fit = ([float(r[c]) for r in rs]
                     for c in ("quick_test_error", "test_error", "train_error_inference"))
        lr_q = lr_t = ""
        label = names[placement].format(v=value)
        if placement == "none":
            gaps.append(_mean(q) - _mean(t))
        else:
            pairs = [(r, base[r["seed"]]) for r in rs if r["seed"] in base]
            lr_q, lr_t = (_mean([_log_ratio(r, b, col) for r, b in pairs])
                          for col in ("quick_test_error", "test_error"))
            if placement in ("after_bn", "b"):  # the non-inferiority settings (P5, P6)
                shifts.append((f"{label} on {PAPER_NAMES.get(net, net)}", lr_q, lr_t))
            lr_q, lr_t = f"{lr_q:+.3f}", f"{lr_t:+.3f}"
        lines.append(f"| {PAPER_NAMES.get(net, net)} | {label} | {len(rs)} | {_mean(q):.1f} | "
                     f"{_mean(t):.1f} | {_mean(fit):.1f} | {lr_q} | {lr_t} |")
    sentence = (f"{profile.name}'s no-dropout test errors are {min(gaps):+.1f} to "
                f"{max(gaps):+.1f} pp from the same networks trained {converged.FACTOR} times "
                "longer on the same images (the convergence target: within 2 pp)")
    return [sentence, *lines, "", *_non_inferiority_lines(shifts, profile.name)]


def _non_inferiority_lines(shifts, name):
    """One sentence per non-inferiority setting: its log ratio at both lengths beside the
    non-inferiority margin (descriptive: a mean of a few seeds, not a verdict)."""
    if not shifts:
        return []
    margin = math.log1p(load_deltas()["non_inferiority"][0])
    parts = [f"{label}: {q:+.3f} at {name}'s length, {t:+.3f} trained longer"
             for label, q, t in shifts]

    def side(x):
        return "below" if x < margin else "above"

    return [f"Non-inferiority settings against the margin log(1 + delta) = {margin:.4f} "
            f"(means of the seeds above, descriptive, not verdicts): " + "; ".join(parts)
            + ". Trained longer, their means lie "
            + ", ".join(f"{side(t)} the margin ({label})" for label, _, t in shifts)
            + f"; at {name}'s length "
            + ", ".join(f"{side(q)} ({label})" for label, q, _ in shifts) + ".", ""]


def _reference_table(base, ref, profile):
    """The table of each baseline beside its converged reference, and the gaps in pp."""
    import pandas as pd

    from reproduce.profiles import PAPER_NAMES

    recipes = {net: {**(getattr(profile, "recipe", None) or {}),
                     **(getattr(profile, "net_recipe", None) or {}).get(net, {})}
               for net in getattr(profile, "networks", ())}
    epochs = "/".join(sorted({str(r.get("epochs", "?")) for r in recipes.values()})) or "?"
    lines = [f"| network | data | {profile.name}: no-dropout test error (%), {epochs} epochs | "
             "converged reference (%) | reference epochs |", "|---|---|---|---|---|"]
    gaps = []
    for r in base.itertuples(index=False):
        e, err = ref.get((r.net, r.data), (None, None))
        std = "" if pd.isna(r.test_error_std) else f" +- {r.test_error_std:.1f}"
        lines.append(f"| {PAPER_NAMES.get(r.net, r.net)} | {r.data} | {r.test_error_mean:.1f}"
                     f"{std} ({int(r.n_seeds)} seeds) | "
                     + (f"{err:.1f} | {e} |" if err is not None else "not measured | |"))
        if err is not None:
            gaps.append(r.test_error_mean - err)
    return lines, gaps


def regime_lines(out_dir, profile, reference=None, quick_reference=None):
    """Per network: the profile's no-dropout test error beside the converged reference of the
    same network on the same images, and what the regime means for comparing magnitudes with
    the paper. For ``quick``: its primary settings trained longer on its first seeds
    (``reproduce/data/converged_quick.csv``, or ``quick_reference`` rows); otherwise the
    pilot's reference (``reproduce/data/converged_reference.csv``, or ``reference``)."""
    if profile.name == "smoke":
        return []
    import pandas as pd

    table = Path(out_dir) / "fig4" / "table.csv"
    if not table.is_file():
        return []
    t = pd.read_csv(table)
    base = t[t.rate == 0.0].drop_duplicates(["net", "data"])  # the shared no-dropout runs
    longer = _longer_lines(profile, quick_reference)
    lines, gaps = ["## Regime: how far the networks are from convergence", ""], []
    if not longer:
        from reproduce.converged import PROFILE as REFERENCE_PROFILE

        # the reference trains the reference profile's networks on its images: no other's
        ref = (_reference(reference) if reference is not None
               or profile.name == REFERENCE_PROFILE else {})
        rows, gaps = _reference_table(base, ref, profile)
        lines += rows
    gap = (f"{profile.name}'s baselines are {min(gaps):.1f}-{max(gaps):.1f} pp above the "
           "converged reference" if gaps else longer[0] if longer else
           "the converged reference of these networks on these images has not been measured "
           "(reproduce/data/converged_reference.csv holds the pilot's); on validation images "
           "they fit their training images and are within 2 pp of the same networks trained 4x "
           "longer (reproduce/data/regime_selection.csv)")
    lines += ["", f"What this means: {gap}. The paper's networks are trained to convergence on "
              "CIFAR; these small networks are trained for a budget of minutes, so their errors "
              "are higher and dropout's harm and Adjust BN's gain are larger, in percentage "
              "points, than the paper's. That is why every error claim is stated relative to "
              "the same network's own no-dropout error, and why a verdict here says whether an "
              "effect shows at this scale: it does not say how large the effect is at the "
              "paper's scale, and a claim that cannot fail at this scale (a large harm) or can "
              "hardly hold (no harm at all) is weaker evidence than the same verdict at "
              "convergence.", ""]
    return lines + longer[1:]


def _target_section(out_dir, profile, name, res, rows=()):
    # an explicit anchor: the claim table links to #<target>
    if res is None:
        return [f'<a id="{name}"></a>', "", f"## {name}", "", "Not built at this profile yet.", ""]
    lines = [f'<a id="{name}"></a>', "", f"## {name}: {res['title']}", ""]
    names = list(dict.fromkeys([*res.get("artefacts", []), "paper_vs_ours.csv"]))
    files = ", ".join(f"[`{a}`]({name}/{a})" for a in names if (out_dir / name / a).is_file())
    lines += [f"Files: {files or 'none written'}", ""]
    if (out_dir / name / "figure.png").is_file():
        lines += [f"![{name}]({name}/figure.png)", ""]
    lines += [res.get("markdown", "").rstrip(), ""]
    if name not in THEORY_TARGETS:
        lines += ["Setup: see *Setup differences from the paper* above "
                  f"(profile `{profile.name}`).", ""]
    lines += ["Theory checks:" if name in THEORY_TARGETS else "Verdicts:", ""]
    for v in rows:
        if math.isnan(float(v["effect"])):
            lines.append(f"- {v['claim']}: **{v['verdict']}**. {v['evidence']}")
            continue
        p = "" if v.get("family") == CHECK else (
            f", {v.get('agree', '')} seeds on the claimed side, p_holm {_p(v.get('p_holm')) or 'n/a'}")
        fam = "" if v.get("family") == CHECK else f" ({v.get('family')}, {v.get('design', '')})"
        lines.append(f"- {v['claim']}{fam}: **{v['verdict']}**: {v.get('reason', '')}; effect "
                     f"{_interval(v)} {v['unit']} (margin {_margin_text(v)}, n = {v['n']}{p}; "
                     f"{v.get('effect_is', '')}; source: {v.get('source') or 'n/a'}). "
                     f"{v['evidence']}")
    lines.append("")
    return lines


def closing_note(out_dir, rows):
    """What ``report`` prints: the primary table first (effect, interval at the verdict's
    level, k of n, power, verdict, reason), then the secondary claims and the checks, the wall
    time and the counts per family and verdict."""
    path = Path(out_dir) / "manifest.json"
    wall = (read_json(path).get("wall_time_s") or 0.0) / 60.0 if path.is_file() else float("nan")
    width = max(len(r["target"]) for r in rows)
    lines = [f"{'target':<{width}}  {'family':<12}  {'verdict':<13}  {'effect [interval]':<28}  "
             f"{'margin':<9}  {'k of n':<7}  {'power':<5}  claim: reason"]
    order = {PRIMARY: 0, SECONDARY: 1, CHECK: 2}
    for r in sorted(rows, key=lambda r: order.get(r.get("family"), 3)):
        k = "" if r.get("family") == CHECK else r.get("agree", "")
        power = _pct(r.get("power")) if r.get("family") == PRIMARY else ""
        lines.append(f"{r['target']:<{width}}  {r.get('family', ''):<12}  {r['verdict']:<13}  "
                     f"{_interval(r):<28}  {_margin_text(r):<9}  {k:<7}  {power:<5}  "
                     f"{r['claim']}: {r.get('reason', '')}")
    claims, checks = _split(rows)
    design = next((r.get("design") for r in rows if r.get("family") == PRIMARY), "")
    lines.append(f"wall time of the last run: {wall:.1f} min; primary family: {design}; "
                 f"{len(claims)} claims: {family_lines(claims)}; {len(checks)} theory checks: "
                 f"{summary_lines(checks)}")
    return "\n".join(lines)
