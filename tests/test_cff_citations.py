"""The Cite page's references, written from ``CITATION.cff`` by ``docs/_ext/cff_bibtex.py``,
checked whole against the APA (7th edition), IEEE and BibTeX forms of the paper."""

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs" / "_ext"))

import cff_bibtex  # noqa: E402

CFF = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))

PAPER_APA = (
    "Li, X., Chen, S., Hu, X., & Yang, J. (2019). Understanding the disharmony between dropout "
    "and batch normalization by variance shift. In Proceedings of the IEEE/CVF Conference on "
    "Computer Vision and Pattern Recognition (CVPR) (pp. 2682\u20132690). IEEE. "
    "https://doi.org/10.1109/CVPR.2019.00279")
PAPER_IEEE = (
    "X. Li, S. Chen, X. Hu, and J. Yang, \u201cUnderstanding the Disharmony between Dropout and "
    "Batch Normalization by Variance Shift,\u201d in Proceedings of the IEEE/CVF Conference on "
    "Computer Vision and Pattern Recognition (CVPR), 2019, pp. 2682\u20132690, "
    "doi: 10.1109/CVPR.2019.00279.")
PREPRINT_APA = (
    "Li, X., Chen, S., Hu, X., & Yang, J. (2018). Understanding the disharmony between dropout "
    "and batch normalization by variance shift (arXiv:1801.05134v1) [Preprint]. arXiv. "
    "https://arxiv.org/abs/1801.05134v1")


def bib_fields(entry):
    """``{field: value}`` of one BibTeX entry (values without their outer braces)."""
    return {k: v for k, v in re.findall(r"^\s+(\w+)\s*=\s*\{(.*)\},?$", entry, flags=re.M)}


def test_the_paper_in_apa_and_ieee():
    paper, preprint, software = cff_bibtex.cff_to_apa(CFF).strip().split("\n\n")
    assert paper == PAPER_APA and preprint == PREPRINT_APA
    assert software == ("The varshift developers. (2026). " + CFF["title"]
                        + " (Version 0.1.0) [Computer software].")
    assert cff_bibtex.cff_to_ieee(CFF).strip().split("\n\n")[0] == PAPER_IEEE


def test_the_paper_in_bibtex():
    paper, software = cff_bibtex.cff_to_bibtex(CFF).split("\n@")
    assert paper.startswith("@inproceedings{li2019understanding,\n")
    assert software.startswith("software{varshift,\n")
    assert bib_fields(paper) == {
        "title": "{" + CFF["preferred-citation"]["title"] + "}",
        "author": "Li, Xiang and Chen, Shuo and Hu, Xiaolin and Yang, Jian",
        "booktitle": CFF["preferred-citation"]["collection-title"],
        "publisher": "IEEE", "pages": "2682--2690", "year": "2019",
        "doi": "10.1109/CVPR.2019.00279"}
    preprint = bib_fields(cff_bibtex.cff_to_classic_bibtex(CFF).split("\n@")[1])
    assert (preprint["eprint"], preprint["archiveprefix"]) == ("1801.05134", "arXiv")


def _cff(title, authors):
    return {"title": "tool", "version": "1", "date-released": "2020-01-01",
            "authors": [{"name": "Team"}],
            "preferred-citation": {"type": "conference-paper", "title": title, "authors": authors,
                                   "collection-title": "Proc", "year": 2020}}


def test_apa_sentence_case_keeps_acronyms_and_the_word_after_a_colon():
    apa = cff_bibtex.cff_to_apa(_cff("Deep Nets: A Study of BN in CNNs and ResNeXt",
                                     [{"family-names": "Li", "given-names": "Xiang"}]))
    assert apa.startswith("Li, X. (2020). Deep nets: A study of BN in CNNs and ResNeXt. In Proc.")


def test_authors_as_each_style_lists_them():
    two = [{"family-names": "Li", "given-names": "Xiang"},
           {"family-names": "Yang", "given-names": "Jian Ming"}]
    cff = _cff("T", two)
    assert cff_bibtex.cff_to_apa(cff).startswith("Li, X., & Yang, J. M. (2020).")
    assert cff_bibtex.cff_to_ieee(cff).startswith("X. Li and J. M. Yang, \u201cT,\u201d")
    bib = cff_bibtex.cff_to_bibtex(cff)
    assert "Li, Xiang and Yang, Jian Ming" in bib
    assert "author  = {{Team}}" in bib  # an entity: one name, never split into first and last
