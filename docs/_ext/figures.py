"""Numbered, captioned, anchored figures, each with a "Cite this figure" line.

Two numbering schemes, so that a figure of this site is never mistaken for one of the paper's:

- the reproduction of a paper figure keeps the paper's number: the figure of
  ``reproduction/fig6`` is "Fig. 6, reproduced", anchored at ``#figure-fig6``; Sphinx does not
  number it (it is a :class:`paper_figure`, which ``numfig`` does not count);
- every other captioned figure (the explainer pages', the checks of Eq. 8, 14 and 15, the
  forest plot of the verdicts) is numbered by Sphinx in the order of the table of contents,
  with letters: "Figure A", "Figure B", ... (captioned tables likewise "Table A").

The reproduction pages show their artefact with a code cell (``show_artefact``), whose output
is an image without a caption: when a page is read, the first image of the outputs of
``reproduction/<target>`` is wrapped in a figure whose caption is the target's title (from its
``result.json`` in the results shown) and the profile of those results; on
``reproduction/index`` the first image (the forest plot) gets the forest plot's caption.

Under every figure with an anchor a line "Cite this figure: ..." gives the site's version, the
figure's number and its address (``html_baseurl`` + page + anchor; the page's path when no base
URL is configured), and for a reproduction the commit of the records it was drawn from.
"""

from __future__ import annotations

import json
import re

from docutils import nodes
from sphinx.util import logging

LOGGER = logging.getLogger(__name__)

PREFIX = "reproduction/"
#: paper artefacts whose figure keeps the paper's number
PAPER_FIGURES = ("fig1", "fig3", "fig4", "fig5", "fig6")
#: the site's own figures on the reproduction pages (numbered with letters)
SITE_FIGURES = ("eq8", "eq14", "eq15")
FOREST = ("Every claim's effect (dot) and the interval its verdict uses (bar), in units of the "
          "claim's own margin (black tick): the forest plot of the verdicts shown on this page")
#: numbered by Sphinx with letters (``numfig_format`` in conf.py: "Figure %s", "Table %s")
LETTERED = ("figure", "table")


class paper_figure(nodes.figure):  # noqa: N801 - a docutils node class
    """A figure numbered as in the paper (its caption says the number, ``vs_label``); ``numfig``
    skips it."""


def letters(number: int) -> str:
    """1 -> A, 26 -> Z, 27 -> AA."""
    out = ""
    while number > 0:
        number, rest = divmod(number - 1, 26)
        out = chr(ord("A") + rest) + out
    return out


def pretty(title: str) -> str:
    """A target's plain-text title in the site's typography (cos²θ, arrows)."""
    title = re.sub(r"cos\^2\(theta\)", "cos²θ", title)
    return title.replace("->", "→").replace("vs ", "vs. ")


def _shown():
    """(profile, folder, short commit) of the results the reproduction pages show."""
    try:
        import shown_results

        choice = shown_results.choose()
        commit = shown_results.provenance(choice).get("commit") or ""
        return choice.profile, choice.folder, commit[:7]
    except Exception:  # noqa: BLE001 - a page without results shows no figure anyway
        return None, None, ""


def _title(folder, target: str) -> str:
    try:
        return json.loads((folder / target / "result.json").read_text(encoding="utf-8"))["title"]
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def _first_image_bundle(doctree):
    """The first output of a code cell that holds an image and is not already in a figure."""
    for node in doctree.findall(nodes.container):
        if node.get("nb_element") != "mime_bundle" or _in_figure(node):
            continue
        if any(str(child.get("mime_type", "")).startswith("image/") for child in node.children):
            return node
    return None


def _in_figure(node) -> bool:
    parent = node.parent
    while parent is not None:
        if isinstance(parent, nodes.figure):
            return True
        parent = parent.parent
    return False


def _wrap(bundle, figure, text: str, label: str = "") -> None:
    """Put ``bundle`` (a cell's image output) in ``figure``, captioned ``label`` + ``text``."""
    for image in bundle.findall(nodes.image):
        image["alt"] = f"{label} {text}".strip()
    bundle.replace_self(figure)
    figure += bundle
    caption = nodes.caption(f"{label} {text}".strip(), "")
    if label:
        caption += nodes.strong(label, label)
        caption += nodes.Text(" ")
    caption += nodes.Text(text)
    figure += caption


def on_doctree_read(app, doctree) -> None:
    """Wrap the artefact image of a reproduction page in a numbered, captioned figure."""
    docname = app.env.docname
    if not docname.startswith(PREFIX):
        return
    target = docname[len(PREFIX):]
    if target not in (*PAPER_FIGURES, *SITE_FIGURES, "index"):
        return
    bundle = _first_image_bundle(doctree)
    if bundle is None:
        return
    profile, folder, _ = _shown()
    drawn = f" Drawn from the {profile} records shown on this page." if profile else ""
    if target == "index":
        _wrap(bundle, nodes.figure(ids=["figure-forest"]), FOREST + "." + drawn)
        return
    title = pretty(_title(folder, target)) if folder is not None else ""
    number, _, what = title.partition(": ")
    if target in PAPER_FIGURES:
        # the paper's number as the target's title gives it ("Fig. 1 (bottom)")
        number = number if number.startswith(f"Fig. {target[3:]}") else f"Fig. {target[3:]}"
        figure = paper_figure(ids=[f"figure-{target}"], classes=["paper-figure"],
                              vs_label=f"{number}, reproduced")
        _wrap(bundle, figure, (f"{what[:1].upper() + what[1:]}." if what else "") + drawn,
              label=f"{number}, reproduced.")
    else:  # the theory targets compute their numbers themselves, at every build
        text = f"{number} checked by simulation: {what}." if what else f"{target}."
        computed = f" Computed by this build (profile {profile})." if profile else ""
        _wrap(bundle, nodes.figure(ids=[f"figure-{target}"]), text + computed)


def on_env_get_updated(app, env) -> list[str]:
    """Letters for the site's own figures and tables ("Figure A"): run after Sphinx numbered
    them (``numfig``), in the order of the table of contents."""
    for numbers in env.toc_fignumbers.values():
        for figtype in LETTERED:
            for key, value in numbers.get(figtype, {}).items():
                if value and isinstance(value[-1], int):
                    numbers[figtype][key] = (*value[:-1], letters(value[-1]))
    return []


def _number(app, docname: str, figure) -> str | None:
    if isinstance(figure, paper_figure):
        return figure.get("vs_label")
    numbers = app.env.toc_fignumbers.get(docname, {}).get("figure", {})
    ids = [i for i in figure["ids"] if i in numbers]
    if not ids:
        return None
    return app.config.numfig_format["figure"] % ".".join(map(str, numbers[ids[0]]))


def on_doctree_resolved(app, doctree, docname) -> None:
    """A "Cite this figure" line under every numbered figure with an anchor."""
    if app.builder.format != "html":
        return
    base = (app.config.html_baseurl or "").rstrip("/")
    _, _, commit = _shown()
    for figure in list(doctree.findall(nodes.figure)):
        if not figure["ids"] or any("vs-cite" in c.get("classes", [])
                                    for c in figure.findall(nodes.paragraph)):
            continue
        number = _number(app, docname, figure)
        if number is None:
            continue
        uri = app.builder.get_target_uri(docname) + "#" + figure["ids"][0]
        where = f"{base}/{uri}" if base else uri
        records = (f"; drawn from the records of commit {commit}" if commit and (
            isinstance(figure, paper_figure) or "figure-forest" in figure["ids"]) else "")
        line = nodes.paragraph(classes=["vs-cite"])
        version = f"varshift {app.config.release}".strip()
        line += nodes.Text(f"Cite this figure: {version} documentation, {number}, ")
        line += nodes.literal(where, where)
        line += nodes.Text(records + ".")
        figure.append(nodes.legend("", line))


def _visit(self, node):
    self.visit_figure(node)


def _depart(self, node):
    self.depart_figure(node)


def setup(app):
    handlers = {name: (_visit, _depart) for name in ("html", "latex", "text", "man", "texinfo")}
    app.add_node(paper_figure, **handlers)
    app.connect("doctree-read", on_doctree_read)
    app.connect("env-get-updated", on_env_get_updated, priority=900)
    app.connect("doctree-resolved", on_doctree_resolved)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
