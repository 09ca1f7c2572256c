"""``report.md`` and ``verdicts.csv`` from the targets' saved results."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from reproduce import plotting
from reproduce._io import atomic_write_text, read_json
from reproduce.claims import VERDICTS, Claim, untested
from reproduce.registry import TARGETS, load_result

__all__ = ["write_report", "setup_differences", "closing_note", "summary_lines",
           "VERDICT_COLUMNS"]

THEORY_TARGETS = {"eq8", "eq14", "eq15"}

VERDICT_COLUMNS = ("target", "claim", "verdict", "effect", "ci_low", "ci_high", "margin", "unit",
                   "n", "evidence")


def _verdict_rows(out_dir, targets):
    rows, results = [], {}
    for name in targets:
        res = load_result(out_dir, name)
        results[name] = res
        if res is None:
            rows.append({"target": name, **untested(Claim("(target not built)", "above", 0.0, ""),
                                                    f"run `python -m reproduce run {name}`")})
            continue
        for v in res.get("verdicts", []):
            rows.append(_numbers({"target": name, **v}))
    return rows, results


def _numbers(row):
    """Numbers of a row read back from JSON, where NaN and infinities are stored as null: a
    one-sample interval is (-inf, inf), anything else missing is NaN."""
    wide = int(row.get("n") or 0) == 1
    for key, fill in (("effect", math.nan), ("ci_low", -math.inf if wide else math.nan),
                      ("ci_high", math.inf if wide else math.nan), ("margin", math.nan)):
        row[key] = fill if row.get(key) is None else float(row[key])
    return row


def _num(x, digits=3):
    x = float(x)
    return "" if math.isnan(x) else ("inf" if x == math.inf else "-inf" if x == -math.inf
                                     else f"{x:.{digits}g}")


def _claim_table(rows):
    """The Markdown table of claims: verdict, effect [95% interval] vs margin, link to section."""
    lines = ["| target | claim | verdict | effect [95% CI] | margin | n |", "|---|---|---|---|---|---|"]
    for r in rows:
        side = {"above": ">", "below": "<", "within": "+-"}.get(r.get("direction"), "")
        text = r["claim"].replace("|", "\\|")
        lines.append(f"| [{r['target']}](#{r['target']}) | {text} | **{r['verdict']}** | "
                     f"{_num(r['effect'])} [{_num(r['ci_low'])}, {_num(r['ci_high'])}] | "
                     f"{side} {_num(r['margin'])} {r['unit']} | {r['n']} |")
    return lines


def summary_lines(rows):
    """Counts per verdict, in :data:`reproduce.claims.VERDICTS` order."""
    counts = {v: sum(r["verdict"] == v for r in rows) for v in VERDICTS}
    return ", ".join(f"{n} {v}" for v, n in counts.items())


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
    subset = (f" (a fixed class-stratified subset: {profile.subset['n_train']} training and "
              f"{profile.subset['n_test']} test images)" if profile.subset else "")
    return (f"Paper: CIFAR-10/100, full-size networks (PreResNet-164, ResNeXt-29 8x64d, WRN-28-10, "
            f"DenseNet-BC-100), 164-300 epochs, 5 seeds. Here: {data}{subset}, the small networks "
            f"of varshift.nets.SMALL_SIZES, the {profile.recipe_kind!r} recipe with overrides "
            f"{profile.recipe}, " + (
                f"{profile.seeds} seed(s) for every setting (compared settings share them)"
                if profile.seeded is None else
                f"{profile.seeds} seed(s) for the no-dropout baseline and "
                f"{', '.join(f'{p} {r:g}' for p, r in profile.seeded)} and one seed elsewhere")
            + ". Only the direction of the effects can be compared with the paper, not the "
            "error levels.")


def write_report(out_dir, profile, targets=TARGETS):
    """Write ``report.md``, ``verdicts.csv`` and ``forest.png``/``.svg`` in ``out_dir``; return
    the verdict rows."""
    out_dir = Path(out_dir)
    rows, results = _verdict_rows(out_dir, targets)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=VERDICT_COLUMNS, lineterminator="\n",
                            extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out_dir / "verdicts.csv", buf.getvalue())
    plotting.forest(rows, out_dir, profile.name, list(profile.data))

    lines = [f"# Reproduction report: profile `{profile.name}`", "",
             f"{profile.description}.", "", "## Summary", "",
             f"{len(rows)} claims: {summary_lines(rows)}. Each claim is decided from an effect, its "
             "95% interval over seeds and a stated margin (see *How verdicts are decided* in the "
             "reproduction docs); the forest plot shows every effect in units of its margin.", "",
             "![forest plot of the claims](forest.png)", ""]
    lines += _manifest_lines(out_dir)
    lines += ["", f"Budget: {profile.budget_note}", "",
              "## Setup differences from the paper", "", setup_differences(profile), "",
              "Table 5 (ImageNet, ResNet-200 / ResNeXt-101 / SENet with one dropout 0.2 after all "
              "BN) is out of reach on one machine and is not reproduced; its numbers are kept in "
              "`reproduce/data/paper_results.csv` for reference.", "",
              "## Verdicts", "", *_claim_table(rows), "",
              "Evidence of each claim: in its target's section below and in `verdicts.csv`.", ""]
    for name in targets:
        lines += _target_section(out_dir, profile, name, results[name])
    atomic_write_text(out_dir / "report.md", "\n".join(lines) + "\n")
    return rows


def _manifest_lines(out_dir):
    if not (out_dir / "manifest.json").is_file():
        return []
    manifest = read_json(out_dir / "manifest.json")
    git = manifest.get("git") or {}
    data = ", ".join(f"{d.get('name')} ({d.get('source', 'source not recorded')})"
                     for d in manifest.get("data", []))
    return [
        f"- command: `{manifest.get('command', '')}`",
        f"- git commit: `{git.get('commit', 'unknown')}`"
        + (" (uncommitted changes)" if git.get("dirty") else ""),
        f"- data: {data}",
        f"- seeds: {manifest.get('seeds')}; training runs: {len(manifest.get('runs', {}))}; "
        f"sum of run times: {manifest.get('total_run_time_s', 0) / 60:.1f} min; "
        f"last invocation wall time: {(manifest.get('wall_time_s') or 0) / 60:.1f} min",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in manifest.get("versions", {}).items()),
    ]


def _target_section(out_dir, profile, name, res):
    # an explicit anchor: the claim table links to #<target>
    if res is None:
        return [f'<a id="{name}"></a>', "", f"## {name}", "", "Not built at this profile yet.", ""]
    lines = [f'<a id="{name}"></a>', "", f"## {name}: {res['title']}", ""]
    files = ", ".join(f"[`{a}`]({name}/{a})" for a in res.get("artefacts", []))
    if (out_dir / name / "paper_vs_ours.csv").is_file():
        files += f", [`paper_vs_ours.csv`]({name}/paper_vs_ours.csv)"
    lines += [f"Files: {files}", ""]
    if (out_dir / name / "figure.png").is_file():
        lines += [f"![{name}]({name}/figure.png)", ""]
    lines += [res.get("markdown", "").rstrip(), ""]
    if name not in THEORY_TARGETS:
        lines += ["Setup: see *Setup differences from the paper* above "
                  f"(profile `{profile.name}`).", ""]
    lines += ["Verdicts:", ""]
    for v in map(_numbers, res.get("verdicts", [])):
        lines.append(f"- {v['claim']}: **{v['verdict']}**, effect {_num(v['effect'])} "
                     f"[{_num(v['ci_low'])}, {_num(v['ci_high'])}] {v['unit']} "
                     f"(margin {_num(v['margin'])}, n = {v['n']}; {v.get('effect_is', '')}). "
                     f"{v['evidence']}")
    lines.append("")
    return lines


def closing_note(out_dir, rows):
    """What ``report`` prints: wall time, counts per verdict, each claim with its interval."""
    path = Path(out_dir) / "manifest.json"
    wall = (read_json(path).get("wall_time_s") or 0.0) / 60.0 if path.is_file() else float("nan")
    width = max(len(r["target"]) for r in rows)
    lines = [f"{'target':<{width}}  {'verdict':<13}  {'effect [95% CI]':<28}  margin  claim"]
    for r in rows:
        ci = f"{_num(r['effect'])} [{_num(r['ci_low'])}, {_num(r['ci_high'])}]"
        lines.append(f"{r['target']:<{width}}  {r['verdict']:<13}  {ci:<28}  "
                     f"{_num(r['margin']):>6}  {r['claim']} ({r['unit']})")
    lines.append(f"wall time of the last run: {wall:.1f} min; {len(rows)} claims: "
                 f"{summary_lines(rows)}")
    return "\n".join(lines)
