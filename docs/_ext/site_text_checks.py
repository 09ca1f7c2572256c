"""Checks of what the built site *says*: every verdict's words against its own numbers.

``check(html_dir)`` reads every HTML page of a built site and returns one line per problem
(``"<page>: <what is wrong>"``); an empty list means the words agree with the numbers. It
reads the visible text (scripts and styles left out) and checks:

- **verdict sentences** (``“claim” (family): holds. Effect e [low, high] unit, margin > m: its
  lower bound ... clears the margin ...``, as ``vsdocs.verdict_line`` writes them) and
  **verdict tables** (columns ``verdict``, ``effect [...]``, ``margin``, ``why``): the reason
  given must be one the verdict can have (``holds`` clears its margin, ``does not hold`` lies on
  the failing side, ``inconclusive`` straddles it, stopped at an earlier Holm step or has one
  seed), and it must be true of the numbers shown (a bound said to clear the margin clears it,
  an interval said to straddle it straddles it, the margin quoted is the margin shown);
- **"straddles"** outside those: a sentence that says an interval straddles a margin must show
  an interval and a margin it straddles (no hand-written explanation of "inconclusive");
- **the tie rule** of the paper's tables (:data:`TIE` percentage points, ``paper_facts``): in a
  clause "higher than ... in n of N (cases)", "a tie in n (cases)", "lower in n (cases)" every
  case ``a vs b`` lies on the side it is listed under, and n cases are listed;
- **exercise solutions** use only plain code: no site helper (``gnum``, ``vsdocs``,
  ``paper_facts``, ``interactive``, ``glue``) in the code of a solution;
- **the scale**: no sentence about this site's runs speaks of "four architectures/networks"
  (the paper trained four; the CPU profiles train two);
- **"no verdicts"** on a page that shows theory checks, and an unexplained ``p_holm``.

``check_site.py`` runs it after the browser checks; ``tests/test_site_text_checks.py`` feeds it
small pages with and without each error.
"""

from __future__ import annotations

import math
import re
from html.parser import HTMLParser
from pathlib import Path

__all__ = ["TIE", "check", "check_page", "check_verdict", "reason_kind"]

#: the tie rule of the paper's tables (``paper_facts.TIE``): closer than this is a tie
TIE = 0.1
SKIP_DIRS = {"_static", "_sources", "_images", ".doctrees", "jupyter_execute",
             "_sphinx_design_static", "_downloads"}
HELPERS = re.compile(r"\b(gnum|vsdocs|paper_facts|interactive|myst_nb|glue)\b")
_BLOCKS = {"p", "li", "dd", "dt", "h1", "h2", "h3", "h4", "h5", "h6", "figcaption", "caption"}
_NUM = r"[−\-+]?(?:\d+(?:\.\d*)?|\.\d+|inf)"

#: verdict -> the reason codes it may carry (``reproduce.claims.REASONS``)
ALLOWED = {
    "holds": {"clears", "unadjusted_clears", "inside", "every_holds", "every_inside"},
    "does not hold": {"failing_side", "unadjusted_fails", "outside", "every_fails",
                      "every_outside"},
    "inconclusive": {"straddles", "stopped", "one_sample", "no_samples", "overlaps"},
    "not tested": {"untested", ""},
}
#: words of each reason code, in the order they are recognised
_KINDS = [
    ("stopped", re.compile(r"(?P<b>lower|upper) bound (?P<v>\S+) is beyond the margin "
                           r"(?P<m>[^\s,;)]+) at its own step's level, but Holm's step-down "
                           r"stopped")),
    ("failing_side", re.compile(r"(?P<b>lower|upper) bound (?P<v>\S+) lies on the failing side "
                                r"of the margin (?P<m>\S+) at the family level")),
    ("clears", re.compile(r"(?P<b>lower|upper) bound (?P<v>\S+) clears the margin (?P<m>\S+) "
                          r"at the family level")),
    ("unadjusted_fails", re.compile(r"interval \[(?P<lo>[^,\]]+), (?P<hi>[^\]]+)\] lies on the "
                                    r"failing side of the margin (?P<m>[^\s,;)]+)")),
    ("unadjusted_clears", re.compile(r"interval \[(?P<lo>[^,\]]+), (?P<hi>[^\]]+)\] clears the "
                                     r"margin (?P<m>[^\s,;)]+)")),
    ("straddles", re.compile(r"interval \[(?P<lo>[^,\]]+), (?P<hi>[^\]]+)\] straddles the "
                             r"margin (?P<m>[^\s,;)]+)")),
    ("every_inside", re.compile(r"every cell lies inside the band ±?\+?[−-]?(?P<m>[\d.]+) "
                                r"\(worst (?P<v>[^)]+)\)")),
    ("every_outside", re.compile(r"a cell lies outside the band ±?\+?[−-]?(?P<m>[\d.]+) "
                                 r"\(worst (?P<v>[^)]+)\)")),
    ("every_holds", re.compile(r"every cell lies on the claimed side of (?P<m>\S+) "
                               r"\(worst (?P<v>[^)]+)\)")),
    ("every_fails", re.compile(r"a cell lies on the wrong side of (?P<m>\S+) "
                               r"\(worst (?P<v>[^)]+)\)")),
    ("inside", re.compile(r"interval \[(?P<lo>[^,\]]+), (?P<hi>[^\]]+)\] lies inside the band "
                          r"±?\+?[−-]?(?P<m>[\d.]+)")),
    ("outside", re.compile(r"interval \[(?P<lo>[^,\]]+), (?P<hi>[^\]]+)\] lies wholly outside "
                           r"the band ±?\+?[−-]?(?P<m>[\d.]+)")),
    ("overlaps", re.compile(r"interval \[(?P<lo>[^,\]]+), (?P<hi>[^\]]+)\] overlaps an edge of "
                            r"the band ±?\+?[−-]?(?P<m>[\d.]+)")),
    ("one_sample", re.compile(r"one seed")),
    ("no_samples", re.compile(r"no per-seed samples")),
]
_VERDICT_LINE = re.compile(
    r"“(?P<claim>[^”]+)” \((?P<family>[^)]*)\): (?P<verdict>holds|does not hold|inconclusive|"
    r"not tested)(?:\. Effect (?P<effect>" + _NUM + r") \[(?P<lo>[^,\]]+), (?P<hi>[^\]]+)\]"
    r"(?P<unit>[^,:]*?)(?:, margin (?P<side>[<>±])\s?(?P<margin>" + _NUM + r")[^:]*)?)?"
    r"(?:[:.]\s*(?P<reason>.*))?$")
_EFFECT_CELL = re.compile(r"(?P<effect>" + _NUM + r") \[(?P<lo>[^,\]]+), (?P<hi>[^\]]+)\]")
_MARGIN_CELL = re.compile(r"(?P<side>[<>±])\s?(?P<margin>" + _NUM + r")")
_TIE_CLAUSE = re.compile(
    r"(?P<side>higher than [^()]*? in (?P<n1>\d+) of \d+ [a-z]+|a tie in (?P<n2>\d+)|"
    r"lower in (?P<n3>\d+))(?: \((?P<cases>[^()]*)\))?")
_PAIR = re.compile(r"(" + _NUM + r") vs (" + _NUM + r")")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z“\"(])")


def _num(text: str) -> float:
    """A number as the pages print it (typographic minus, ``inf``); NaN if it is none."""
    text = str(text).strip().replace("−", "-").rstrip(".,;")
    try:
        return float(text)
    except ValueError:
        return math.nan


def reason_kind(reason: str) -> tuple[str, dict]:
    """The reason code of ``reason`` and what it names (``""`` if none is recognised)."""
    for kind, pattern in _KINDS:
        found = pattern.search(reason)
        if found:
            return kind, {k: (v if k == "b" else _num(v)) for k, v in found.groupdict().items()
                          if v is not None}
    if "not tested" in reason or "lack" in reason or "plumbing" in reason:
        return "untested", {}
    return "", {}


def _claimed(value: float, margin: float, direction: str) -> bool:
    """Is ``value`` on the claimed side of ``margin`` (or on it)?"""
    return value >= margin if direction == "above" else value <= margin


def check_verdict(verdict: str, side: str | None, margin: float, low: float, high: float,
                  reason: str) -> list[str]:
    """What is wrong with one verdict's words: its reason against its verdict and numbers.

    Args:
        verdict: ``holds``, ``does not hold``, ``inconclusive`` or ``not tested``.
        side: the margin's side as shown: ``>`` (claim above), ``<`` (below), ``±`` (band).
        margin: the margin shown (NaN if none).
        low, high: the interval shown (NaN if none).
        reason: the reason in words.
    """
    if verdict not in ALLOWED:
        return [f"unknown verdict {verdict!r}"]
    kind, nums = reason_kind(reason)
    if kind not in ALLOWED[verdict]:
        said = kind or "no recognised reason"
        return [f"verdict {verdict!r} with the reason {said!r}: {reason[:90]!r}"]
    out = []
    direction = {">": "above", "<": "below", "±": "within"}.get(side or "", "")
    m = nums.get("m", margin)
    if not math.isnan(margin) and not math.isnan(m) and abs(m - margin) > 0.01 * abs(margin) + 5e-5:
        out.append(f"the reason quotes the margin {m:g}, the verdict shows {margin:g}")
    lo, hi = nums.get("lo", low), nums.get("hi", high)
    v, bound = nums.get("v", math.nan), nums.get("b")
    if kind in ("clears", "failing_side", "stopped"):
        # a lower bound beyond the margin lies above it, an upper bound below it
        if not (v >= m if bound == "lower" else v <= m):
            out.append(f"'{kind}': the {bound} bound {v:g} is not beyond the margin {m:g}")
        shown = low if bound == "lower" else high
        if not math.isnan(shown) and not (shown >= m if bound == "lower" else shown <= m):
            out.append(f"'{kind}': the interval shown [{low:g}, {high:g}] has its {bound} bound "
                       f"on the other side of the margin {m:g}")
        wanted = {("clears", "above"): "lower", ("clears", "below"): "upper",
                  ("failing_side", "above"): "upper", ("failing_side", "below"): "lower"}
        if (kind, direction) in wanted and bound != wanted[(kind, direction)]:
            out.append(f"'{kind}' names the {bound} bound of a claim {direction} its margin")
    if kind == "straddles" and not (lo <= m <= hi):
        out.append(f"'straddles' but the interval [{lo:g}, {hi:g}] does not contain the margin "
                   f"{m:g}")
    if kind in ("unadjusted_clears", "unadjusted_fails") and direction in ("above", "below"):
        near, far = (lo, hi) if direction == "above" else (hi, lo)
        if kind == "unadjusted_clears" and not _claimed(near, m, direction):
            out.append(f"'clears' but the interval [{lo:g}, {hi:g}] reaches the margin {m:g}")
        if kind == "unadjusted_fails" and _claimed(far, m, direction):
            out.append(f"'failing side' but the interval [{lo:g}, {hi:g}] reaches the margin "
                       f"{m:g}")
    if kind == "inside" and not (-m <= lo and hi <= m):
        out.append(f"'inside the band' but [{lo:g}, {hi:g}] leaves ±{m:g}")
    if kind == "outside" and not (hi <= -m or lo >= m):
        out.append(f"'outside the band' but [{lo:g}, {hi:g}] meets ±{m:g}")
    if kind == "overlaps" and ((-m <= lo and hi <= m) or hi <= -m or lo >= m):
        out.append(f"'overlaps an edge' but [{lo:g}, {hi:g}] does not overlap ±{m:g}")
    if kind == "every_inside" and abs(v) > m:
        out.append(f"'every cell inside' but the worst is {v:g} against ±{m:g}")
    if kind == "every_outside" and abs(v) < m:
        out.append(f"'a cell outside' but the worst is {v:g} against ±{m:g}")
    if direction in ("above", "below"):
        if kind == "every_holds" and not _claimed(v, m, direction):
            out.append(f"'every cell on the claimed side' but the worst is {v:g} against {m:g}")
        if kind == "every_fails" and _claimed(v, m, direction):
            out.append(f"'a cell on the wrong side' but the worst is {v:g} against {m:g}")
    return out


class _Page(HTMLParser):
    """The visible text of a page as blocks, tables and the code of exercise solutions."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.blocks, self.tables, self.solution_code, self.text = [], [], [], []
        self._open, self._skip, self._pre = [], 0, 0
        self._div = []  # (is a solution) per open div
        self._table = None
        self._in_head = False

    @property
    def _in_solution(self):
        return any(self._div)

    def handle_starttag(self, tag, attrs):
        classes = (dict(attrs).get("class") or "").split()
        if tag in ("script", "style"):
            self._skip += 1
        elif tag == "div":
            self._div.append("solution" in classes)
        elif tag == "pre":
            self._pre += 1
            if self._in_solution:
                self.solution_code.append("")
        elif tag in _BLOCKS and not self._pre:
            self._open.append([tag, ""])
        elif tag == "table":
            self._table = {"head": [], "rows": []}
            self.tables.append(self._table)
        elif tag == "thead":
            self._in_head = True
        elif tag == "tr" and self._table is not None:
            self._table["rows" if not self._in_head else "head"].append([])
        elif tag in ("td", "th") and self._table is not None:
            part = self._table["head" if self._in_head else "rows"]
            if part:
                part[-1].append("")

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self._skip:
            self._skip -= 1
        elif tag == "div" and self._div:
            self._div.pop()
        elif tag == "pre" and self._pre:
            self._pre -= 1
        elif tag in _BLOCKS and self._open and self._open[-1][0] == tag:
            _, text = self._open.pop()
            self.blocks.append(" ".join(text.split()))
        elif tag == "thead":
            self._in_head = False
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._skip:
            return
        if self._pre:
            if self._in_solution and self.solution_code:
                self.solution_code[-1] += data
            return
        self.text.append(data)
        for block in self._open:
            block[1] += data
        if self._table is not None:
            part = self._table["head" if self._in_head else "rows"]
            if part and part[-1]:
                part[-1][-1] += data


def _verdict_lines(blocks):
    out = []
    for text in blocks:
        found = _VERDICT_LINE.search(text)
        if not found:
            continue
        g = found.groupdict()
        if g["effect"] is None:  # "not tested", or a verdict without numbers
            out += check_verdict(g["verdict"], None, math.nan, math.nan, math.nan,
                                 g["reason"] or "")
            continue
        out += [f"“{g['claim'][:60]}”: {p}" for p in check_verdict(
            g["verdict"], g["side"], _num(g["margin"]) if g["margin"] else math.nan,
            _num(g["lo"]), _num(g["hi"]), g["reason"] or "")]
    return out


def _verdict_tables(tables):
    out = []
    for table in tables:
        head = [" ".join(h.split()).lower() for h in (table["head"][0] if table["head"] else [])]
        col = {name: next((i for i, h in enumerate(head) if h.startswith(name)), None)
               for name in ("claim", "verdict", "effect", "margin", "why", "reason")}
        why = col["why"] if col["why"] is not None else col["reason"]
        if col["verdict"] is None or col["effect"] is None or why is None:
            continue
        for row in table["rows"]:
            cells = [" ".join(c.split()) for c in row]
            if len(cells) != len(head):
                continue
            verdict, reason = cells[col["verdict"]], cells[why]
            effect = _EFFECT_CELL.search(cells[col["effect"]])
            margin = _MARGIN_CELL.search(cells[col["margin"]]) if col["margin"] is not None \
                else None
            claim = cells[col["claim"]][:60] if col["claim"] is not None else "?"
            if verdict not in ALLOWED:
                continue
            low, high = (_num(effect["lo"]), _num(effect["hi"])) if effect else (math.nan,
                                                                                 math.nan)
            out += [f"table row “{claim}”: {p}" for p in check_verdict(
                verdict, margin["side"] if margin else None,
                _num(margin["margin"]) if margin else math.nan, low, high, reason)]
    return out


def _straddles(blocks):
    """"straddles" in a sentence that shows no interval containing a margin."""
    out = []
    for text in blocks:
        for sentence in _SENTENCE.split(text):
            if "straddl" not in sentence:
                continue
            pairs = re.findall(r"\[(" + _NUM + r"), (" + _NUM + r")\] straddles the margin (" +
                               _NUM + r")", sentence)
            # the summary counts verdicts by their reasons ("... straddles the margin: 2"); each
            # of those verdicts is stated with its numbers, and checked, on its own page
            counted = re.fullmatch(r".*\binconclusive \((?:[^()]*; )?its interval straddles the "
                                   r"margin: \d+[;)].*", sentence)
            if not pairs and not counted:
                out.append(f"'straddles' without the interval and margin it is true of: "
                           f"{sentence[:100]!r}")
    return out


def _ties(blocks):
    out = []
    for text in blocks:
        for found in _TIE_CLAUSE.finditer(text):
            side = found["side"].split()[0]
            count = int(found["n1"] or found["n2"] or found["n3"])
            cases = found["cases"]
            if not cases:
                continue
            pairs = [(_num(a), _num(b)) for a, b in _PAIR.findall(cases)]
            if not pairs:
                continue
            if len(pairs) != count:
                out.append(f"'{found['side'][:40]}' lists {len(pairs)} cases, not {count}")
            for a, b in pairs:
                diff = round(a - b, 2)
                ok = {"higher": diff >= TIE, "a": abs(diff) < TIE, "lower": diff <= -TIE}[side]
                if not ok:
                    word = {"a": "a tie"}.get(side, side)
                    out.append(f"{a:g} vs {b:g} listed as {word}: the tie rule (under {TIE:g} "
                               "points) says otherwise")
    return out


def _scale(blocks):
    out = []
    for text in blocks:
        for sentence in _SENTENCE.split(text):
            if re.search(r"\b(four|4) (architectures|networks)\b", sentence, re.I) and \
                    not re.search(r"paper|Table 1|Table 3|Table 4|Table 6|CIFAR", sentence):
                out.append(f"'four architectures/networks' about this site's runs: "
                           f"{sentence[:100]!r}")
    return out


def check_page(html: str) -> list[str]:
    """The problems of one page's words (see the module docstring)."""
    start, end = html.find("<article"), html.rfind("</article>")
    if start >= 0 and end > start:  # the page's own text, not the navigation around it
        html = html[start:end]
    page = _Page()
    page.feed(html)
    text = " ".join(" ".join(page.text).split())
    out = _verdict_lines(page.blocks) + _verdict_tables(page.tables) + _straddles(page.blocks)
    out += _ties(page.blocks) + _scale(page.blocks)
    for code in page.solution_code:
        found = HELPERS.search(code)
        if found:
            out.append(f"an exercise solution uses the site helper {found.group(0)!r}: "
                       f"{code.strip()[:80]!r}")
    if re.search(r"hold no verdicts(?! and no theory checks)", text) and "(theory check)" in text:
        out.append("says it holds no verdicts while it shows theory checks")
    if "hold no verdicts and no theory checks" in text and "(theory check)" in text:
        out.append("says it holds no theory checks while it shows some")
    if "p_holm" in text and "Holm-adjusted" not in text:
        out.append("shows p_holm without saying it is the Holm-adjusted p-value")
    return list(dict.fromkeys(out))  # each problem once


def check(html_dir: Path) -> list[str]:
    """One line per problem of the built site's words: ``"<page>: <problem>"``."""
    html_dir = Path(html_dir)
    out = []
    for path in sorted(html_dir.rglob("*.html")):
        rel = path.relative_to(html_dir)
        if set(rel.parts[:-1]) & SKIP_DIRS or rel.name in ("genindex.html", "search.html"):
            continue
        out += [f"{rel.as_posix()}: {p}" for p in check_page(path.read_text(encoding="utf-8"))]
    return out


if __name__ == "__main__":  # python docs/_ext/site_text_checks.py docs/_build/html
    import sys

    problems = check(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/_build/html"))
    print("\n".join(problems) or "site text: no problems")
    sys.exit(1 if problems else 0)
