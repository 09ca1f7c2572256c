"""BibTeX entries generated from ``CITATION.cff`` (a small Sphinx extension).

At the start of every build, :func:`write_citation_bib` turns the repository's ``CITATION.cff``
into ``docs/_build/generated/citation.bib``: one ``@software`` entry for varshift itself and one
entry for its ``preferred-citation`` (the paper). The Cite and Home pages include that file, so
the BibTeX shown on the site is always the one ``CITATION.cff`` says. The file is rewritten only
when its text changes, so an unchanged build stays incremental.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

__all__ = ["cff_to_bibtex", "write_citation_bib", "setup"]

_CFF_TO_BIBTEX_TYPE = {
    "software": "software",
    "conference-paper": "inproceedings",
    "proceedings": "inproceedings",
    "article": "article",
    "book": "book",
    "report": "techreport",
    "thesis": "phdthesis",
}


def _person(author: dict) -> str:
    if "family-names" in author:
        given = author.get("given-names", "")
        return f"{author['family-names']}, {given}".strip().rstrip(",")
    return "{" + author["name"] + "}"  # an entity: keep it as one name


def _key(entry: dict, fallback: str) -> str:
    authors = entry.get("authors") or [{}]
    first = authors[0].get("family-names") or fallback
    word = next((w for w in re.findall(r"[A-Za-z]+", entry.get("title", ""))
                 if len(w) > 3), "")
    return re.sub(r"[^a-z0-9]", "", f"{first}{entry.get('year', '')}{word}".lower())


def _fields(entry: dict) -> list[tuple[str, str]]:
    fields = [("title", "{" + entry["title"] + "}"),
              ("author", " and ".join(_person(a) for a in entry.get("authors", [])))]
    if entry.get("collection-title"):
        fields.append(("booktitle", entry["collection-title"]))
    if entry.get("journal"):
        fields.append(("journal", entry["journal"]))
    if entry.get("start") and entry.get("end"):
        fields.append(("pages", f"{entry['start']}--{entry['end']}"))
    year = entry.get("year") or str(entry.get("date-released", ""))[:4]
    if year:
        fields.append(("year", str(year)))
    for name in ("version", "doi", "url", "license"):
        if entry.get(name):
            fields.append((name, str(entry[name])))
    if entry.get("repository-code") and not entry.get("url"):
        fields.append(("url", entry["repository-code"]))
    for ident in entry.get("identifiers", []) or []:
        value = str(ident.get("value", ""))
        if value.lower().startswith("arxiv:"):
            fields += [("eprint", value.split(":", 1)[1]), ("archiveprefix", "arXiv")]
    return fields


def _entry(kind: str, key: str, fields: list[tuple[str, str]]) -> str:
    width = max(len(name) for name, _ in fields)
    body = ",\n".join(f"  {name:<{width}} = {{{value}}}" for name, value in fields)
    return f"@{kind}{{{key},\n{body}\n}}\n"


def cff_to_bibtex(cff: dict) -> str:
    """BibTeX for a parsed ``CITATION.cff``: the software first, then its preferred citation.

    Args:
        cff: the CITATION.cff mapping (``yaml.safe_load`` of the file).

    Returns:
        The BibTeX text, one entry per cited work.
    """
    software = dict(cff, type=cff.get("type", "software"))
    entries = [_entry(_CFF_TO_BIBTEX_TYPE.get(software["type"], "misc"),
                      re.sub(r"[^a-z0-9]", "", cff["title"].split(":")[0].lower()) or "software",
                      _fields(software))]
    preferred = cff.get("preferred-citation")
    if preferred:
        entries.append(_entry(_CFF_TO_BIBTEX_TYPE.get(preferred.get("type"), "misc"),
                              _key(preferred, "paper"), _fields(preferred)))
    return "\n".join(entries)


def write_citation_bib(cff_path: Path, out_path: Path) -> bool:
    """Write the BibTeX of ``cff_path`` to ``out_path``; return whether the file changed."""
    text = cff_to_bibtex(yaml.safe_load(Path(cff_path).read_text(encoding="utf-8")))
    out_path = Path(out_path)
    if out_path.exists() and out_path.read_text(encoding="utf-8") == text:
        return False
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out_path)
    return True


def _on_builder_inited(app) -> None:
    srcdir = Path(app.srcdir)
    write_citation_bib(srcdir.parent / "CITATION.cff", srcdir / "_build" / "generated" / "citation.bib")


def setup(app):
    app.connect("builder-inited", _on_builder_inited)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
