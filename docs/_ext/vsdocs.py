"""Helpers shared by the documentation's notebooks (imported by the pages, not by varshift).

- :func:`gnum` glues a number already formatted as text, so prose can quote computed values
  with ``{glue:text}`name```.
- :func:`style` sets one quiet matplotlib look for every figure of the site.
- :func:`results` finds the reproduction's result folder (see :mod:`shown_results`: a local
  ``results/paper|quick``, else the published records rebuilt at build time, else smoke) and
  :func:`show_artefact` shows one paper artefact from it, after a header saying which results
  these are, from which commit, with links to download the files.

The module also runs outside the site (a downloaded notebook, after ``pip install varshift``):
without MyST-NB :func:`gnum` only formats, and the results are looked for under the working
directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import matplotlib as mpl
import pandas as pd
import shown_results
from IPython.display import Image, Markdown, display

from reproduce import markdown

try:
    from myst_nb import glue
except ImportError:  # a downloaded notebook run outside the site: nothing to glue into
    def glue(name, variable, display=True):  # noqa: ARG001, A002
        return None

ROOT = shown_results.ROOT

__all__ = ["ROOT", "gnum", "style", "results", "show_artefact", "md_table", "header",
           "verdicts", "checks", "verdict_line", "verdict_table", "verdict_sentences",
           "verdict_counts", "count_text", "family_counts", "check_counts", "reasons_in_words",
           "reason_kind", "effect_text", "margin_text", "family_label", "missing_data",
           "REASON_WORDS"]


def gnum(name: str, value, fmt: str = ".3f") -> str:
    """Format ``value`` with ``fmt`` and glue the text under ``name``; return the text."""
    text = format(value, fmt) if fmt else str(value)
    glue(name, text, display=False)
    return text


def style() -> None:
    """The site's matplotlib style: small, light, readable on a laptop screen."""
    mpl.rcParams.update({
        "figure.figsize": (6.4, 3.6), "figure.dpi": 110, "savefig.dpi": 110,
        "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
        "grid.alpha": 0.3, "font.size": 10, "legend.frameon": False,
        "figure.constrained_layout.use": True,
    })


def md_table(df: pd.DataFrame, floatfmt: str = ".4g") -> Markdown:
    """A DataFrame as a Markdown table (:func:`reproduce.markdown.md_table`; renders as a
    themed HTML table)."""
    return Markdown(markdown.md_table(df, floatfmt))


def results() -> tuple[str, Path]:
    """``(profile, folder)`` of the reproduction results the pages show.

    See :mod:`shown_results`: a local ``results/paper`` or ``results/quick``, else the published
    ``paper`` or ``quick`` records rebuilt with the current code (no training), else
    ``results/smoke`` (the smoke profile is run once if it does not exist).
    """
    choice = shown_results.shown()
    return choice.profile, choice.folder


def results_fingerprint() -> str:
    """A short hash of the results the pages would show.

    The reproduction pages carry it in a comment of their code (see ``results_stamp``), so the
    execution cache re-executes them when the results or the helpers that show them change,
    and reuses them otherwise (the "commits ago" of the header is filled in at every build, see
    ``results_stamp``). Call after :func:`shown_results.stage`.
    """
    choice = shown_results.choose()
    folder = choice.folder
    if not (folder / "manifest.json").exists():
        return "none"
    digest = hashlib.sha1(f"{choice.origin}/{choice.profile}".encode())
    here = Path(__file__).resolve().parent  # the page helpers: a change re-executes the pages
    files = [here / "vsdocs.py", here / "shown_results.py", here / "paper_facts.py",
             folder / "manifest.json", folder / "verdicts.csv", folder / "checks.csv",
             choice.source / "provenance.json",
             *sorted(folder.glob("*/result.json")), *sorted(folder.glob("*/*.csv"))]
    for path in files:
        if path.exists():
            digest.update(str(path.relative_to(path.parents[1])).encode())
            digest.update(path.read_bytes())
    return f"{choice.profile}-{digest.hexdigest()[:16]}"


def manifest() -> dict:
    """The manifest of the results shown, with its profile."""
    profile, folder = results()
    data = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    data.setdefault("profile", profile)
    return data


def target_result(target: str) -> dict:
    """A target's ``result.json`` (title, verdicts, markdown), or ``{}`` if it has none."""
    _, folder = results()
    path = folder / target / "result.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _describe(profile: str, data: dict) -> str:
    """One line about the run that produced the results, from its manifest."""
    bits = [f"profile **{profile}**"]
    if data.get("profile_description"):
        bits[0] += f" ({data['profile_description']})"
    names = [d.get("name", str(d)) if isinstance(d, dict) else str(d) for d in data.get("data", [])]
    if names:
        bits.append("data: " + ", ".join(f"`{n}`" for n in names))
    if data.get("seeds"):
        bits.append(f"seeds: {', '.join(map(str, data['seeds']))}")
    return "; ".join(bits)


def _download(path: Path, label: str | None = None) -> str:
    """A MyST ``{download}`` link to ``path`` (relative to the executing page's folder)."""
    rel = os.path.relpath(path, Path.cwd()).replace(os.sep, "/")
    return f"{{download}}`{label or path.name} <{rel}>`"


def _origin_line(choice, prov: dict) -> str:
    """The header's first sentence: which results, from which commit, how many commits ago."""
    commit = prov.get("commit")
    when = shown_results.commits_since_text(commit) if commit else ""
    made = f"commit `{commit[:10]}`" + (" with local changes" if prov.get("dirty") else "") \
        + f" ({when})" if commit else "an unknown commit"
    machine = prov.get("machine") or {}
    where = " ".join(filter(None, (machine.get("system"), machine.get("machine"))))
    wall = prov.get("wall_time_s")
    facts = ", ".join(filter(None, (
        f"varshift {prov['varshift_version']}" if prov.get("varshift_version") else "",
        f"started {prov['started_at']}" if prov.get("started_at") else "",
        f"on {where}" if where else "",
        f"{wall / 60:.0f} min wall time" if wall else "")))
    pilot = (" These are the pilot's records: the claims were written after its data was read, "
             "so every verdict shown is exploratory; a confirmatory run uses fresh seeds and "
             "unread test images (profile `quick`)." if choice.profile == "pilot" else "")
    if choice.origin == "published":
        return (f"**Results shown: the published `{choice.profile}` records** "
                f"(`docs/results/{choice.profile}/`), trained at {made}; {facts}. Every figure, "
                "table and verdict below was rebuilt from those run records by this build, with "
                "the current code; no training was repeated." + pilot)
    if choice.origin == "local":
        return (f"**Results shown: the local `results/{choice.profile}/`** (a run on this "
                f"machine, preferred over the published records), made at {made}; {facts}.")
    return (f"**Results shown: the smoke profile** (`results/smoke/`), made at {made}; {facts}. "
            "No published or local quick/paper results were found.")


def header(target: str | None = None) -> Markdown:
    """The first lines of a reproduction page: which results, whence, and download links."""
    choice = shown_results.choose()
    folder = choice.folder
    lines = [_origin_line(choice, shown_results.provenance(choice))
             + (" Run `nox -s reproduce` for the `quick` profile." if choice.profile == "smoke"
                else "")]
    files = sorted((folder / target).glob("*.csv")) if target else []
    files += [p for p in (folder / "verdicts.csv", folder / "manifest.json", folder / "report.md")
              if p.is_file()]
    lines.append("Download: " + " · ".join(_download(p) for p in files))
    short = []
    if target is None and choice.origin != "local":
        for path in sorted(folder.glob("*/result.json")):
            result = json.loads(path.read_text(encoding="utf-8"))
            if result.get("runs_used", 0) < result.get("runs", 0):
                short.append(path.parent.name)
    if short:
        lines.append(f":::{{warning}}\nThe {choice.profile} records do not hold every run the "
                     f"current code plans for: {', '.join(short)} (the run configurations changed "
                     "since they were made); those pages say what their verdicts rest on.\n:::")
    return Markdown("\n\n".join(lines))


def _mismatch(target: str, choice) -> str:
    """A warning when the shown records do not cover what the current code plans, else ''."""
    from reproduce.registry import UNTESTED

    result = target_result(target)
    runs, used = result.get("runs", 0), result.get("runs_used", result.get("runs", 0))
    untested = result.get("verdicts") and all(v.get("verdict") == UNTESTED
                                              for v in result["verdicts"])
    if choice.origin == "local" or not (used < runs or untested):
        return ""
    if used < runs:
        text = (f"The current code plans {runs} training runs for `{target}`; only {used} of them "
                f"are among the {choice.profile} records (the run configurations changed since "
                "they were made). " + ("This target is therefore not rebuilt here. " if used == 0
                                       else "The verdicts below rest on those runs only. ")
                + "Re-run and re-publish the profile to update this page.")
    else:
        text = (f"`{target}` could not be rebuilt from the {choice.profile} run records alone "
                "(published records hold no trained models); see the note below.")
    return f":::{{warning}}\n{text}\n:::"


# --- verdicts said in words -------------------------------------------------------------------
#
# Every sentence about a verdict is made here from the verdict's own fields (``verdicts.csv``
# and ``checks.csv`` of ``reproduce report``): the verdict, the interval at the family level,
# the margin and the ``reason`` generated from those numbers by ``reproduce.claims``. No page
# explains a verdict in words of its own; ``site_text_checks`` checks the built pages for it.

_WORDS = {"holds": "holds", "does not hold": "does not hold", "inconclusive": "inconclusive",
          "not tested": "not tested"}
_SIDE = {"above": ">", "below": "<", "within": "±"}
#: the reason codes of ``reproduce.claims.REASONS``, in a few words each (the summary's column)
REASON_WORDS = {
    "clears": "clears its margin at the family level",
    "failing_side": "lies on the failing side of its margin at the family level",
    "straddles": "its interval straddles the margin",
    "stopped": "beyond its margin at its own Holm step, but Holm's step-down stopped at an "
               "earlier claim",
    "one_sample": "one seed gives no interval",
    "no_samples": "no per-seed samples",
    "untested": "not tested",
    "inside": "inside its band",
    "outside": "outside its band",
    "overlaps": "its interval overlaps an edge of its band",
    "unadjusted_clears": "its interval clears the margin",
    "unadjusted_fails": "its interval lies on the failing side of the margin",
    "every_holds": "every cell on the claimed side",
    "every_fails": "a cell on the wrong side",
    "every_inside": "every cell inside its band",
    "every_outside": "a cell outside its band",
}


def _reason_patterns() -> dict:
    from reproduce.claims import REASONS

    out = {}
    for code, template in REASONS.items():
        pattern = re.sub(r"\\\{\w+\\\}", ".*?", re.escape(template))
        out[code] = re.compile(pattern + r"\.?$")
    return out


def reason_kind(row) -> str:
    """The code (a key of ``reproduce.claims.REASONS``) of the row's ``reason``; ``""`` when
    the reason is none of them (a ``not tested`` row's own words)."""
    reason = row.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        return "untested" if row.get("verdict") == "not tested" else ""
    for code, pattern in _reason_patterns().items():
        if pattern.match(reason.strip()):
            return code
    return ""


def _finite(value) -> bool:
    try:
        return bool(pd.notna(value)) and abs(float(value)) != float("inf")
    except (TypeError, ValueError):
        return False


def _decimals(margin) -> int:
    """The decimals of the verdict's reason (``reproduce.claims``): a hundredth of the margin."""
    import math

    try:
        margin = abs(float(margin))
    except (TypeError, ValueError):
        return 3
    if not math.isfinite(margin) or margin == 0:
        return 3
    return int(min(5, max(0, 2 - math.floor(math.log10(margin)))))


def _num(value, k: int) -> str:
    out = f"{float(value):.{k}f}"
    return out.lstrip("-") if float(out) == 0 else out  # no "-0.000"


def _minus(text: str) -> str:
    text = text.replace("+-", "\u00b1")
    return re.sub(r"(?<![\w.])-(?=\d)", "\u2212", text)  # a typographic minus


def effect_text(row) -> str:
    """``effect [low, high] unit`` rounded as the verdict's reason rounds, or '' if none."""
    if not _finite(row.get("effect")):
        return ""
    k = _decimals(row.get("margin"))
    text = _num(row["effect"], k)
    if _finite(row.get("ci_low")) and _finite(row.get("ci_high")):
        text += f" [{_num(row['ci_low'], k)}, {_num(row['ci_high'], k)}]"
    unit = row.get("unit")
    if isinstance(unit, str) and unit.strip():
        text += f" {unit.strip()}"
    return _minus(text)


def margin_text(row) -> str:
    """``> 0.0198 log ratio (an error ratio of 1.02)``: the side, the margin, its unit."""
    import math

    if not _finite(row.get("margin")):
        return ""
    m = float(row["margin"])
    unit = row.get("unit") if isinstance(row.get("unit"), str) else ""
    text = f"{_SIDE.get(row.get('direction'), '')} {_num(m, _decimals(m))} {unit}".strip()
    if unit == "log ratio":
        text += f" (an error ratio of {math.exp(m):.3g})"
    return text


def family_label(row) -> str:
    """``primary claim``, ``secondary claim, exploratory``, ``theory check``..."""
    family = row.get("family") if isinstance(row.get("family"), str) else ""
    design = row.get("design") if isinstance(row.get("design"), str) else ""
    if family == "theory check":
        return "theory check"
    if not family:
        return "claim"
    return f"{family} claim" + (f", {design}" if design else "")


def verdicts(target: str | None = None) -> pd.DataFrame:
    """``verdicts.csv`` (the primary and secondary claims), optionally for one target.

    Without a ``verdicts.csv`` (``reproduce report`` not run yet) the rows are collected from
    the targets' ``result.json`` files, theory checks left out.
    """
    _, folder = results()
    if (folder / "verdicts.csv").exists():
        table = pd.read_csv(folder / "verdicts.csv")
    else:
        rows = [dict(v, target=p.parent.name)
                for p in sorted(folder.glob("*/result.json"))
                for v in json.loads(p.read_text(encoding="utf-8")).get("verdicts", [])
                if v.get("family") != "theory check"]
        table = pd.DataFrame(rows, columns=["target", "claim", "verdict", "evidence"])
    if target is not None:
        table = table[table["target"] == target]
    return table.reset_index(drop=True)


def checks(target: str | None = None) -> pd.DataFrame:
    """``checks.csv`` (the theory checks), optionally for one target; empty without one."""
    _, folder = results()
    path = folder / "checks.csv"
    table = pd.read_csv(path) if path.exists() else pd.DataFrame(
        columns=["target", "claim", "family", "verdict", "reason"])
    if target is not None:
        table = table[table["target"] == target]
    return table.reset_index(drop=True)


def verdict_line(row) -> str:
    """One verdict in words, from its own fields: claim, family, verdict, effect [interval at
    the verdict's level], margin and the reason.

    ``“claim” (primary claim): **holds**. Effect 0.89 [0.46, 1.22] log ratio, margin > 0.0198
    log ratio (an error ratio of 1.02): its lower bound ... clears the margin ...``
    """
    verdict = str(row.get("verdict", ""))
    claim = str(row.get("claim", "")).rstrip(".")
    head = f"“{claim}” ({family_label(row)}): **{_WORDS.get(verdict, verdict)}**"
    reason = row.get("reason") if isinstance(row.get("reason"), str) else ""
    reason = reason.strip() or ("the records shown lack what it needs" if verdict == "not tested"
                                else "")
    effect = effect_text(row)
    if verdict == "not tested" or not effect:
        return head + (f": {reason}." if reason else ".")
    margin = margin_text(row)
    return (head + f". Effect {effect}" + (f", margin {margin}" if margin else "")
            + (f": {_minus(reason)}." if reason else "."))


def verdict_table(target: str | None = None, link: bool = False) -> pd.DataFrame:
    """The verdict table: claim / family / verdict / effect [interval] / margin / why."""
    table = verdicts(target)
    rows = []
    for row in table.to_dict("records"):
        out = {}
        if link:
            out["page"] = f"[{row['target']}]({row['target']}.md)"
        out |= {"claim": row.get("claim", ""), "family": family_label(row),
                "verdict": row.get("verdict", ""),
                "effect [interval at the verdict's level]": effect_text(row) or "—",
                "margin": margin_text(row) or "—",
                "why": _minus(row.get("reason")) if isinstance(row.get("reason"), str) else ""}
        rows.append(out)
    return pd.DataFrame(rows, columns=(["page"] if link else [])
                        + ["claim", "family", "verdict", "effect [interval at the verdict's level]",
                           "margin", "why"])


def count_text(table: pd.DataFrame) -> str:
    """``2 hold, 1 inconclusive`` for the verdicts of ``table``."""
    if not len(table):
        return "none"
    counts = table["verdict"].value_counts()
    plural = {"holds": "hold", "does not hold": "do not hold"}
    parts = []
    for verdict in ("holds", "does not hold", "inconclusive", "not tested"):
        n = int(counts.get(verdict, 0))
        if n:
            parts.append(f"{n} {plural.get(verdict, verdict) if n != 1 else verdict}")
    return ", ".join(parts)


def verdict_counts(target: str | None = None) -> str:
    """"2 hold, 1 does not hold, 1 inconclusive" for a target's (or all) verdicts."""
    table = verdicts(target)
    return count_text(table) if len(table) else "no verdicts"


def family_counts(target: str | None = None) -> str:
    """``primary: 1 holds; secondary (exploratory): 2 inconclusive`` for a target's claims."""
    table = verdicts(target)
    parts = []
    for family in ("primary", "secondary"):
        sub = table[table["family"] == family] if "family" in table else table.iloc[:0]
        if len(sub):
            design = sub["design"].dropna().iloc[0] if "design" in sub and \
                sub["design"].notna().any() else ""
            parts.append(f"{family}{f' ({design})' if design else ''}: {count_text(sub)}")
    return "; ".join(parts) or (count_text(table) if len(table) else "no claims")


def check_counts(target: str | None = None) -> str:
    """``5 hold`` for a target's (or all) theory checks, ``""`` without any."""
    table = checks(target)
    return count_text(table) if len(table) else ""


def reasons_in_words(table: pd.DataFrame) -> str:
    """Why the verdicts of ``table`` are what they are, counted by reason:
    ``2 inconclusive (its interval straddles the margin: 2)``."""
    parts = []
    for verdict in ("holds", "does not hold", "inconclusive", "not tested"):
        sub = table[table["verdict"] == verdict]
        if not len(sub):
            continue
        kinds = pd.Series([reason_kind(r) for r in sub.to_dict("records")]).value_counts()
        why = "; ".join(f"{REASON_WORDS.get(k, 'see its page')}: {n}" for k, n in kinds.items())
        word = {"holds": "hold", "does not hold": "do not hold"}.get(verdict, verdict) \
            if len(sub) != 1 else verdict
        parts.append(f"{len(sub)} {word} ({why})")
    return ", ".join(parts)


def verdict_sentences(target: str) -> Markdown:
    """The reproduction page's first paragraph: every verdict and theory check of ``target``,
    each in words made from its own fields (:func:`verdict_line`)."""
    profile, _ = results()
    table, table_checks = verdicts(target), checks(target)
    if not len(table) and not len(table_checks):
        return Markdown(f"The `{profile}` results shown hold no verdicts and no theory checks "
                        "for this artefact.")
    lines = [f"**What this site found at the `{profile}` scale.**"
             + ("" if len(table) else " This artefact's claims are formulas: they are checked "
                "(below), not judged as findings.")]
    if len(table):
        lines.append("")
        for row in table.to_dict("records"):
            if str(row.get("claim", "")).startswith("(all claims"):
                verdict = str(row.get("verdict", ""))
                lines.append("- None of this artefact's claims could be tested from the records "
                             "shown." if verdict == "not tested" else
                             f"- All of this artefact's claims: **{verdict}**.")
            else:
                lines.append(f"- {verdict_line(row)}")
        lines += ["", f"These verdicts speak for the `{profile}` scale only, whether they hold "
                  "or not. Each interval is the one its verdict uses (each bound at the level of "
                  "its Holm step within its family); [Verdicts and budgets](../researchers.md) "
                  "says how verdicts are decided."]
    if len(table_checks):
        lines += ["", "**Theory checks** (formula against simulation and against what Keras "
                  "stores; they guard the code and are checks, not verdicts on the paper's "
                  "claims; each has a two-sided 95% interval, or is judged on its worst cell):",
                  ""]
        lines += [f"- {verdict_line(row)}" for row in table_checks.to_dict("records")]
    return Markdown("\n".join(lines))


def missing_data(target: str, profile: str) -> Markdown:
    """One plain sentence for a page whose data the shown records do not hold."""
    return Markdown(
        f"The `{profile}` records shown here do not hold the data of this page, so its figure "
        f"and table are not drawn; `python -m reproduce run {target} --profile {profile}` "
        "produces them.")


def show_artefact(target: str) -> None:
    """Show one artefact's figure, paper-vs-ours table, own table and verdicts."""
    profile, folder = results()
    data = manifest()
    glue(f"{target}_profile", profile, display=False)
    if target == "fig4":
        from reproduce.profiles import get_profile

        rates = [f"{r:g}" for r in get_profile(profile).fig4_rates if r]
        glue("fig4_rates_shown", f"{', '.join(rates[:-1])} and {rates[-1]}" if len(rates) > 1
             else (rates[0] if rates else "no drop ratio"), display=False)
    display(header(target))
    display(Markdown(f"Read from `{target}/` of these results: {_describe(profile, data)}."))
    result = target_result(target)
    tdir = folder / target
    if not tdir.is_dir() or str(result.get("markdown", "")).startswith("Not built"):
        display(missing_data(target, profile))
        return
    warning = _mismatch(target, shown_results.choose())
    if warning:
        display(Markdown(warning))
    figure = next((tdir / f"figure.{ext}" for ext in ("png", "svg") if (tdir / f"figure.{ext}").exists()),
                  None)
    if figure is not None and figure.suffix == ".png":
        display(Image(filename=str(figure)))
    elif figure is not None:
        from IPython.display import SVG  # noqa: PLC0415

        display(SVG(filename=str(figure)))
    table = verdict_table(target)
    if len(table):
        display(Markdown("**Verdicts**"))
        display(md_table(table))
    if result.get("markdown"):
        display(Markdown(result["markdown"]))
    for name, title in (("paper_vs_ours.csv", "Paper vs ours"), ("table.csv", "Our measurements")):
        path = tdir / name
        if path.exists():
            frame = pd.read_csv(path)
            shown = frame.head(80)
            more = f", first {len(shown)} shown" if len(frame) > len(shown) else ""
            display(Markdown(f":::{{dropdown}} {title}: `{name}` ({len(frame)} rows{more})\n"
                             f"{md_table(shown).data}\n:::"))
