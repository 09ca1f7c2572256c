"""Helpers shared by the documentation's notebooks (imported by the pages, not by varshift).

- :func:`gnum` glues a number already formatted as text, so prose can quote computed values
  with ``{glue:text}`name```.
- :func:`style` sets one quiet matplotlib look for every figure of the site.
- :func:`results` finds the reproduction's result folder (``results/quick`` if present, else
  ``results/smoke``, running the smoke profile if neither exists) and :func:`show_artefact`
  shows one paper artefact from it.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib as mpl
import pandas as pd
from IPython.display import Image, Markdown, display
from myst_nb import glue

ROOT = Path(os.environ.get("VARSHIFT_ROOT", Path(__file__).resolve().parents[2]))
PROFILES = ("quick", "smoke")  # preferred first

__all__ = ["ROOT", "gnum", "style", "results", "show_artefact", "md_table"]


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
    """A DataFrame as a Markdown table (renders as a themed HTML table)."""
    cols = list(df.columns)

    def cell(v):
        if isinstance(v, float):
            return format(v, floatfmt)
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return Markdown("\n".join(lines))


def _root() -> Path:
    return Path(os.environ.get("VARSHIFT_RESULTS", ROOT / "results"))


def results() -> tuple[str, Path]:
    """``(profile, folder)`` of the reproduction results the pages show.

    ``results/quick`` wins if it has a ``manifest.json``, then ``results/smoke``. If neither
    exists, the smoke profile is run once (``python -m reproduce run --profile smoke``, a few
    minutes on a laptop) and its results are used.
    """
    root = _root()
    for profile in PROFILES:
        if (root / profile / "manifest.json").exists():
            return profile, root / profile
    for command in ("run", "report"):
        subprocess.run([sys.executable, "-m", "reproduce", command, "--profile", "smoke",
                        "--out", str(root / "smoke")],
                       cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not (root / "smoke" / "manifest.json").exists():
        raise FileNotFoundError(f"the smoke reproduction wrote no {root / 'smoke' / 'manifest.json'}")
    return "smoke", root / "smoke"


def results_fingerprint() -> str:
    """A short hash of the results the pages would show (without running anything).

    The reproduction pages carry it in a comment of their code (see ``results_stamp``), so the
    execution cache re-executes them when the results change and reuses them otherwise.
    """
    root = _root()
    for profile in PROFILES:
        folder = root / profile
        if (folder / "manifest.json").exists():
            digest = hashlib.sha1(profile.encode())
            files = [folder / "manifest.json", folder / "verdicts.csv",
                     *sorted(folder.glob("*/result.json")), *sorted(folder.glob("*/*.csv"))]
            for path in files:
                if path.exists():
                    digest.update(str(path.relative_to(folder)).encode())
                    digest.update(path.read_bytes())
            return f"{profile}-{digest.hexdigest()[:16]}"
    return "none"


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
    if data.get("started_at"):
        bits.append(f"run started {data['started_at']}")
    commit = (data.get("git") or {}).get("commit")
    if commit:
        bits.append(f"commit `{commit[:10]}`" + (" (with local changes)" if data["git"].get("dirty") else ""))
    return "; ".join(bits)


def show_artefact(target: str) -> None:
    """Show one artefact's figure, paper-vs-ours table, own table and verdicts."""
    profile, folder = results()
    data = manifest()
    glue(f"{target}_profile", profile, display=False)
    note = data.get("budget_note") or ("The smoke profile checks the pipeline, not the paper."
                                       if profile == "smoke" else "")
    display(Markdown(
        f"These results are read from `results/{profile}/{target}/`: {_describe(profile, data)}."
        + (f" *{note}*" if note else "")
        + (" Run `nox -s reproduce` for the `quick` profile." if profile == "smoke" else "")))
    tdir = folder / target
    if not tdir.is_dir():
        display(Markdown(f":::{{warning}}\nThe `{profile}` profile did not produce `{target}`.\n:::"))
        return
    figure = next((tdir / f"figure.{ext}" for ext in ("png", "svg") if (tdir / f"figure.{ext}").exists()),
                  None)
    if figure is not None and figure.suffix == ".png":
        display(Image(filename=str(figure)))
    elif figure is not None:
        from IPython.display import SVG  # noqa: PLC0415

        display(SVG(filename=str(figure)))
    table = verdicts(target)
    if len(table):
        display(Markdown("**Verdicts**"))
        display(md_table(table[[c for c in ("claim", "verdict", "evidence") if c in table.columns]]))
    result = target_result(target)
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
