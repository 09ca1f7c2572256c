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
           "verdict_table", "verdict_sentences", "verdict_counts", "missing_data"]


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
             folder / "manifest.json", folder / "verdicts.csv", choice.source / "provenance.json",
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


def verdicts(target: str | None = None) -> pd.DataFrame:
    """``verdicts.csv`` (target, claim, verdict, evidence), optionally for one target.

    Without a ``verdicts.csv`` (``reproduce report`` not run yet) the rows are collected from
    the targets' ``result.json`` files.
    """
    _, folder = results()
    if (folder / "verdicts.csv").exists():
        table = pd.read_csv(folder / "verdicts.csv")
    else:
        rows = [dict(v, target=p.parent.name)
                for p in sorted(folder.glob("*/result.json"))
                for v in json.loads(p.read_text(encoding="utf-8")).get("verdicts", [])]
        table = pd.DataFrame(rows, columns=["target", "claim", "verdict", "evidence"])
    if target is not None:
        table = table[table["target"] == target]
    return table.reset_index(drop=True)


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

_WORDS = {"holds": "holds", "does not hold": "does not hold", "inconclusive": "is inconclusive",
          "not tested": "was not tested"}


def _why(row) -> str:
    """The verdict's own reason (``reason`` of ``verdicts.csv``, generated from its numbers)."""
    reason = row.get("reason")
    if isinstance(reason, str) and reason.strip():
        return f" ({reason.strip()})"
    if row.get("verdict") == "not tested":
        return " (the records shown lack what it needs)"
    return ""


def _decimals(margin) -> int:
    """Decimals that resolve a tenth of ``margin`` (2 when there is no usable margin)."""
    import math

    try:
        margin = abs(float(margin))
    except (TypeError, ValueError):
        return 2
    if not math.isfinite(margin) or margin == 0:
        return 2
    return int(min(4, max(0, 1 - math.floor(math.log10(margin)))))


def _finite(value) -> bool:
    try:
        return bool(pd.notna(value)) and abs(float(value)) != float("inf")
    except (TypeError, ValueError):
        return False


def effect_text(row) -> str:
    """``effect [low, high] unit`` rounded to the claim's margin, or '' if there is none."""
    if not _finite(row.get("effect")):
        return ""
    k = _decimals(row.get("margin"))

    def num(value) -> str:
        out = f"{float(value):.{k}f}"
        return out.lstrip("-") if float(out) == 0 else out  # no "-0.000"

    text = num(row["effect"])
    if _finite(row.get("ci_low")) and _finite(row.get("ci_high")):
        text += f" [{num(row['ci_low'])}, {num(row['ci_high'])}]"
    unit = row.get("unit")
    if isinstance(unit, str) and unit.strip():
        text += f" {unit.strip()}"
    return re.sub(r"(?<![\w.])-(?=\d)", "\u2212", text)  # a typographic minus


def verdict_table(target: str | None = None, link: bool = False) -> pd.DataFrame:
    """The student's verdict table: claim / verdict / effect [interval], rounded."""
    table = verdicts(target)
    rows = []
    for row in table.to_dict("records"):
        out = {}
        if link:
            out["page"] = f"[{row['target']}]({row['target']}.md)"
        family = row.get("family")
        out |= {"claim": row.get("claim", ""),
                "family": family if isinstance(family, str) else "",
                "verdict": row.get("verdict", ""),
                "effect [interval at the verdict's level]": effect_text(row) or "—",
                "why": row.get("reason") if isinstance(row.get("reason"), str) else ""}
        rows.append(out)
    return pd.DataFrame(rows, columns=(["page"] if link else [])
                        + ["claim", "family", "verdict", "effect [interval at the verdict's level]",
                           "why"])


def verdict_counts(target: str | None = None) -> str:
    """"2 hold, 1 does not hold, 1 inconclusive" for a target's (or all) verdicts."""
    table = verdicts(target)
    if not len(table):
        return "no verdicts"
    counts = table["verdict"].value_counts()
    plural = {"holds": "hold", "does not hold": "do not hold"}
    parts = []
    for verdict in ("holds", "does not hold", "inconclusive", "not tested"):
        n = int(counts.get(verdict, 0))
        if n:
            parts.append(f"{n} {plural.get(verdict, verdict) if n != 1 else verdict}")
    return ", ".join(parts)


def verdict_sentences(target: str) -> Markdown:
    """The reproduction page's first paragraph: every verdict of ``target`` in words."""
    profile, _ = results()
    table = verdicts(target)
    if not len(table):
        return Markdown(f"The `{profile}` results shown hold no verdicts for this artefact.")
    sentences = []
    for row in table.to_dict("records"):
        verdict = str(row.get("verdict", ""))
        if str(row.get("claim", "")).startswith("(all claims"):
            sentences.append("None of this artefact's claims could be tested from the records "
                             "shown." if verdict == "not tested" else
                             f"All of this artefact's claims: **{verdict}**.")
            continue
        effect = effect_text(row)
        sentence = (f"“{str(row.get('claim', '')).rstrip('.')}” **{_WORDS.get(verdict, verdict)}**"
                    + _why(row) + (f": {effect}" if effect and verdict != "not tested"
                                   else "") + ".")
        sentences.append(sentence[0].upper() + sentence[1:] if sentence[0] != "“" else sentence)
    return Markdown(f"**What this site found at the `{profile}` scale.** " + " ".join(sentences)
                    + f" These verdicts speak for the `{profile}` scale only, whether they hold "
                    "or not; [Verdicts and budgets](../researchers.md) says how they are "
                    "decided.")


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
