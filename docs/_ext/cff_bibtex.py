"""Citations generated from ``CITATION.cff`` (a small Sphinx extension).

``cffconvert`` writes one BibTeX ``@misc`` or APA-like reference of the software alone (no
``preferred-citation``, no biblatex or IEEE, a placeholder key); the Cite page needs the paper,
its preprint and the software in four styles, so they are written here.

At the start of every build, :func:`write_citation_files` turns the repository's
``CITATION.cff`` into ``docs/_build/generated/``:

- ``citation.bib``: the ``preferred-citation`` (the paper, ``@inproceedings``) first, then one
  ``@software`` entry for varshift itself (biblatex);
- ``citation-classic.bib``: the software as a classic-BibTeX ``@misc`` and the arXiv v1
  preprint as ``@misc`` (from the ``references`` entry with an arXiv identifier);
- ``citation-apa.txt`` and ``citation-ieee.txt``: ready-to-paste APA (7th ed.) and IEEE
  strings for the paper, the preprint and the software;
- ``citation-result.txt``: the same for one reproduction result (version and commit);
- ``cite-<work>-<style>.<ext>``: one reference per file (``work``: paper, preprint, software;
  ``style``: biblatex, bibtex, apa, ieee), so that each copy block of the site copies one.

The software's URL is taken from ``CITATION.cff`` (``url`` or ``repository-code``) or, failing
that, from ``pyproject.toml``'s ``[project.urls]`` (Homepage, Repository, Source, Code or
Documentation); without one no URL is written. The Cite and Home pages include these files, so
what the site shows is always what ``CITATION.cff`` says. A file is rewritten only when its text
changes, so an unchanged build stays incremental.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

__all__ = ["cff_to_bibtex", "cff_to_classic_bibtex", "cff_to_apa", "cff_to_ieee",
           "cff_to_result_template", "software_url",
           "write_citation_bib", "write_citation_files", "setup"]

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
    if (entry.get("publisher") or {}).get("name"):
        fields.append(("publisher", entry["publisher"]["name"]))
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
    if _arxiv_id(entry):
        fields += [("eprint", _arxiv_id(entry)), ("archiveprefix", "arXiv")]
    return fields


def _entry(kind: str, key: str, fields: list[tuple[str, str]]) -> str:
    width = max(len(name) for name, _ in fields)
    body = ",\n".join(f"  {name:<{width}} = {{{value}}}" for name, value in fields)
    return f"@{kind}{{{key},\n{body}\n}}\n"


def cff_to_bibtex(cff: dict) -> str:
    """BibTeX for a parsed ``CITATION.cff``: its preferred citation (the paper) first, then the
    software (``@software``, a biblatex type classic BibTeX does not know).

    Args:
        cff: the CITATION.cff mapping (``yaml.safe_load`` of the file).

    Returns:
        The BibTeX text, one entry per cited work.
    """
    return "\n".join(_bibtex_entries(cff).values())


def _bibtex_entries(cff: dict) -> dict[str, str]:
    """``{"paper": ..., "software": ...}``: the biblatex entries, the paper first."""
    entries = {}
    preferred = cff.get("preferred-citation")
    if preferred:
        entries["paper"] = _entry(_CFF_TO_BIBTEX_TYPE.get(preferred.get("type"), "misc"),
                                  _key(preferred, "paper"), _fields(preferred))
    software = dict(cff, type=cff.get("type", "software"))
    entries["software"] = _entry(_CFF_TO_BIBTEX_TYPE.get(software["type"], "misc"),
                                 _software_key(cff), _fields(software))
    return entries


def _arxiv_id(entry: dict) -> str | None:
    for ident in entry.get("identifiers", []) or []:
        value = str(ident.get("value", ""))
        if value.lower().startswith("arxiv:"):
            return value.split(":", 1)[1]
    return None


def _preprint(cff: dict) -> dict | None:
    """The first ``references`` entry with an arXiv identifier (the paper's preprint), if any."""
    return next((r for r in cff.get("references", []) or [] if _arxiv_id(r)), None)


def _software_url(cff: dict) -> str | None:
    return cff.get("url") or cff.get("repository-code")


def _software_key(cff: dict) -> str:
    return re.sub(r"[^a-z0-9]", "", cff["title"].split(":")[0].lower()) or "software"


def cff_to_classic_bibtex(cff: dict) -> str:
    """Classic-BibTeX ``@misc`` entries: the software, then the arXiv v1 preprint if cited.

    ``@software`` is a biblatex type that classic BibTeX styles (``plain``, ``ieeetr``, most
    journal styles) do not know; ``@misc`` works everywhere.
    """
    return "\n".join(_classic_entries(cff).values())


def _classic_entries(cff: dict) -> dict[str, str]:
    """``{"software": ..., "preprint": ...}`` as classic-BibTeX ``@misc`` entries."""
    year = str(cff.get("date-released", ""))[:4]
    fields = [("title", "{" + cff["title"] + "}"),
              ("author", " and ".join(_person(a) for a in cff.get("authors", []))),
              ("year", year), ("note", f"Version {cff['version']}" if cff.get("version") else "")]
    if _software_url(cff):
        fields.append(("howpublished", "\\url{" + _software_url(cff) + "}"))
    entries = {"software": _entry("misc", _software_key(cff), [(k, v) for k, v in fields if v])}
    pre = _preprint(cff)
    if pre:
        ident = _arxiv_id(pre)
        fields = [("title", "{" + pre["title"] + "}"),
                  ("author", " and ".join(_person(a) for a in pre.get("authors", []))),
                  ("year", str(pre.get("year", ""))), ("eprint", ident), ("archiveprefix", "arXiv"),
                  ("note", f"arXiv:{ident}v1"), ("url", f"https://arxiv.org/abs/{ident}v1")]
        entries["preprint"] = _entry("misc", _key(pre, "preprint"), fields)
    return entries


def _initials(given: str) -> list[str]:
    return [part[0] + "." for part in re.split(r"[\s]+", given.strip()) if part]


def _apa_authors(authors: list[dict]) -> str:
    names = [f"{a['family-names']}, {' '.join(_initials(a.get('given-names', '')))}".strip(", ")
             if "family-names" in a else a["name"] for a in authors]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + ", & " + names[-1]


def _ieee_authors(authors: list[dict]) -> str:
    names = [f"{' '.join(_initials(a.get('given-names', '')))} {a['family-names']}".strip()
             if "family-names" in a else a["name"] for a in authors]
    if len(names) <= 2:
        return " and ".join(names)
    return ", ".join(names[:-1]) + ", and " + names[-1]


def _sentence_case(title: str) -> str:
    """APA's sentence case: lower-case every word but the first, the first after ':' and
    words with a capital after their first letter (acronyms such as BN, CNNs, ResNeXt)."""
    words, out, cap = title.split(" "), [], True
    for word in words:
        keep = cap or any(c.isupper() for c in word[1:])
        out.append(word if keep else word.lower())
        cap = word.endswith(":")
    return " ".join(out)


def _end(text: str) -> str:
    return text if text.endswith((".", "?", "!")) else text + "."


def cff_to_apa(cff: dict) -> str:
    """APA (7th edition) references: the preferred citation, the preprint, the software."""
    return "\n\n".join(_apa_entries(cff).values()) + "\n"


def _apa_entries(cff: dict) -> dict[str, str]:
    lines = {}
    paper = cff.get("preferred-citation")
    if paper:
        pages = f" (pp. {paper['start']}\u2013{paper['end']})" if paper.get("start") else ""
        doi = f" https://doi.org/{paper['doi']}" if paper.get("doi") else ""
        # APA 7: the publisher after the proceedings, before the DOI
        publisher = (paper.get("publisher") or {}).get("name")
        publisher = f" {_end(publisher)}" if publisher else ""
        lines["paper"] = (f"{_apa_authors(paper['authors'])} ({paper['year']}). "
                          f"{_sentence_case(paper['title'])}. In {paper['collection-title']}"
                          f"{pages}.{publisher}{doi}")
    pre = _preprint(cff)
    if pre:
        ident = _arxiv_id(pre)
        lines["preprint"] = (f"{_apa_authors(pre['authors'])} ({pre['year']}). "
                             f"{_sentence_case(pre['title'])} (arXiv:{ident}v1) [Preprint]. arXiv. "
                             f"https://arxiv.org/abs/{ident}v1")
    url = f" {_software_url(cff)}" if _software_url(cff) else ""
    lines["software"] = (f"{_end(_apa_authors(cff['authors']))} "
                         f"({str(cff.get('date-released', ''))[:4]}). {cff['title']} "
                         f"(Version {cff['version']}) [Computer software].{url}")
    return lines


def cff_to_ieee(cff: dict) -> str:
    """IEEE references: the preferred citation, the preprint, the software."""
    return "\n\n".join(_ieee_entries(cff).values()) + "\n"


def _ieee_entries(cff: dict) -> dict[str, str]:
    lines = {}
    paper = cff.get("preferred-citation")
    if paper:
        pages = f", pp. {paper['start']}\u2013{paper['end']}" if paper.get("start") else ""
        doi = f", doi: {paper['doi']}" if paper.get("doi") else ""
        lines["paper"] = (f"{_ieee_authors(paper['authors'])}, \u201c{paper['title']},\u201d in "
                          f"{paper['collection-title']}, {paper['year']}{pages}{doi}.")
    pre = _preprint(cff)
    if pre:
        ident = _arxiv_id(pre)
        lines["preprint"] = (f"{_ieee_authors(pre['authors'])}, \u201c{pre['title']},\u201d "
                             f"arXiv:{ident}v1, {pre['year']}. [Online]. Available: "
                             f"https://arxiv.org/abs/{ident}v1")
    url = f" [Online]. Available: {_software_url(cff)}" if _software_url(cff) else ""
    lines["software"] = (f"{_ieee_authors(cff['authors'])}, \u201c{cff['title']},\u201d version "
                         f"{cff['version']}, {str(cff.get('date-released', ''))[:4]}.{url}")
    return lines


def cff_to_result_template(cff: dict) -> str:
    """APA and IEEE templates for one reproduction result (placeholders in angle brackets)."""
    apa = cff_to_apa(cff).strip().split("\n\n")[-1]
    ieee = cff_to_ieee(cff).strip().split("\n\n")[-1]
    what = "Reproduction of <artefact, e.g. Table 3>, <profile> profile, results of commit <commit>."
    return f"APA:  {apa} {what}\n\nIEEE: {ieee} {what}\n"


def software_url(pyproject_path: Path) -> str | None:
    """The software's URL from ``pyproject.toml``'s ``[project.urls]``, or ``None``.

    Only a key that names the software itself counts (Homepage, Repository, Source, Code,
    Documentation, case-insensitive); a ``Paper`` link is not the software's address.
    """
    try:
        import tomllib  # noqa: PLC0415
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # noqa: PLC0415
        except ImportError:
            return None
    path = Path(pyproject_path)
    if not path.exists():
        return None
    urls = tomllib.loads(path.read_text(encoding="utf-8")).get("project", {}).get("urls", {})
    by_key = {k.lower(): v for k, v in urls.items()}
    return next((by_key[k] for k in ("homepage", "repository", "source", "code", "documentation")
                 if by_key.get(k)), None)


def _write_if_changed(text: str, out_path: Path) -> bool:
    out_path = Path(out_path)
    if out_path.exists() and out_path.read_text(encoding="utf-8") == text:
        return False
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out_path)
    return True


def _load(cff_path: Path, pyproject_path: Path | None = None) -> dict:
    cff = yaml.safe_load(Path(cff_path).read_text(encoding="utf-8"))
    url = software_url(pyproject_path) if pyproject_path else None
    if url and not _software_url(cff):
        cff["url"] = url
    return cff


def write_citation_bib(cff_path: Path, out_path: Path, pyproject_path: Path | None = None) -> bool:
    """Write the BibTeX of ``cff_path`` to ``out_path``; return whether the file changed."""
    return _write_if_changed(cff_to_bibtex(_load(cff_path, pyproject_path)), out_path)


def write_citation_files(cff_path: Path, out_dir: Path, pyproject_path: Path | None = None) -> list[str]:
    """Write every generated citation file into ``out_dir``; return the names that changed."""
    cff = _load(cff_path, pyproject_path)
    files = {"citation.bib": cff_to_bibtex(cff), "citation-classic.bib": cff_to_classic_bibtex(cff),
             "citation-apa.txt": cff_to_apa(cff), "citation-ieee.txt": cff_to_ieee(cff),
             "citation-result.txt": cff_to_result_template(cff)}
    # one reference per file, so that every copy block of the site copies one reference
    for style, entries, ext in (("biblatex", _bibtex_entries(cff), "bib"),
                                ("bibtex", _classic_entries(cff), "bib"),
                                ("apa", _apa_entries(cff), "txt"),
                                ("ieee", _ieee_entries(cff), "txt")):
        for work, text in entries.items():
            files[f"cite-{work}-{style}.{ext}"] = text.strip() + "\n"
    return [name for name, text in files.items() if _write_if_changed(text, Path(out_dir) / name)]


def _on_builder_inited(app) -> None:
    srcdir = Path(app.srcdir)
    write_citation_files(srcdir.parent / "CITATION.cff", srcdir / "_build" / "generated",
                         srcdir.parent / "pyproject.toml")


def setup(app):
    app.connect("builder-inited", _on_builder_inited)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
