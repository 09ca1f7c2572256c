"""Open every page of the built documentation in headless Chromium and check it.

Usage: ``python docs/_ext/check_site.py docs/_build/html [--chromium /usr/bin/chromium]
[--screenshots DIR]`` (``nox -s docs-check`` runs it). The site is served on 127.0.0.1 by a
threaded ``http.server``; Playwright drives the system Chromium (``executable_path``, no
``playwright install``). Requests that leave 127.0.0.1 are blocked, so the check also proves the
site works offline. Every HTML page is opened at a laptop's width (1280 px) and at a phone's
(390 px), and fails on:

- console errors, uncaught page errors, failed requests;
- formulas: pages with math without rendered MathJax containers, a MathJax error (bad TeX),
  raw TeX left in the text (``$...$``, ``$$``, ``\\(``, ``\\[``, ``\\begin{``; code blocks
  excluded), and, at either width, a formula that is cut: wider than a box that hides what
  sticks out, or wider than the page; at 1280 px a displayed formula must also fit its column
  without scrolling;
- layout, at both widths: the page wider than the viewport (``scrollWidth``), or any element of
  the article sticking out of the viewport or of the article's column, unless it sits inside a
  box that scrolls (``overflow-x: auto``) and itself fits; the offending elements are named;
- figures: every image or interactive figure of an article must sit in a ``<figure>`` whose
  caption starts with its number ("Fig. 6 ...", "Figure A ...");
- every ``<img>`` loaded (``naturalWidth > 0``);
- every internal link resolves (HTTP 200) and every ``#anchor`` exists on its target page;
- every executed page (a MyST notebook with code cells) links its ``.ipynb`` download, which
  exists, is a valid notebook (``nbformat``), says in its first cell that it runs after
  ``pip install varshift``, and holds no cell tagged ``site-only`` nor an import of the site's
  helper modules;
- every interactive (Plotly) figure responds: clicking each slider's rail changes the curves;
- no page shows a traceback, "File not found" or a temporary path (the patterns of
  ``page_guard``, on the text the browser shows, code blocks included).

When ``docs/_ext/site_text_checks.py`` exists, its ``check(html_dir)`` runs too (checks of what
the pages say); every line it returns is a failure.

Screenshots (full page) of the pages a reviewer reads first are saved at both widths
(``<name>.png`` at 1280 px, ``<name>-390.png`` at 390 px). Exit status 1 if any check fails.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import importlib.util
import re
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import page_guard  # noqa: E402 - docs/_ext, next to this script

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SKIP_DIRS = {"_static", "_sources", "_images", ".doctrees", "jupyter_execute", "_sphinx_design_static"}
#: (width, height) of the two viewports every page is measured at: a laptop, a phone
WIDTHS = {"1280 px": (1280, 900), "390 px": (390, 844)}
SCREENSHOTS = {"index.html": "home", "summary.html": "summary", "theory.html": "theory",
               "guidelines.html": "guidelines", "diagnose.html": "diagnose",
               "reproduction/index.html": "reproduction-index",
               "reproduction/fig4.html": "fig4", "reproduction/table3.html": "table3",
               "reproduction/fig6.html": "fig6", "cite.html": "cite"}
#: the site's helper modules (docs/_ext): a downloaded notebook must not import them
SITE_HELPERS = ("vsdocs", "paper_facts", "interactive", "shown_results", "results_stamp")
SITE_ONLY = "site-only"
#: a figure's caption starts with its number: the paper's ("Fig. 6", "Table 3") or the site's
#: own ("Figure A")
NUMBERED_CAPTION = r"^\s*(Fig\.|Figure|Table)\s+([A-Z]{1,2}|\d+)\b"

# Layout of the page at the current viewport width. Elements of the article that stick out of
# the viewport or of the article's column (1 px of slack), unless they sit inside a box that
# scrolls horizontally and itself fits; only the outermost offender of a subtree is named (the
# box that is too wide, not everything inside it). Formulas: cut when a box that hides overflow
# (or the viewport) ends before the formula does; "scrolls" when a displayed formula is wider
# than its own scrolling box.
JS_LAYOUT = r"""
() => {
  const vw = window.innerWidth;
  const doc = document.documentElement;
  const column = document.querySelector("article.bd-article") || document.querySelector("main")
      || document.body;
  const c = column.getBoundingClientRect();
  const left = Math.max(0, c.left), right = Math.min(vw, c.right);
  const describe = (el) => {
    let name = el.tagName.toLowerCase();
    if (el.id) { name += "#" + el.id; }
    if (typeof el.className === "string" && el.className.trim()) {
      name += "." + el.className.trim().split(/\s+/).slice(0, 2).join(".");
    }
    const text = (el.textContent || "").trim().replace(/\s+/g, " ").slice(0, 50);
    return name + (text ? " " + JSON.stringify(text) : "");
  };
  const hidden = (el) => {
    for (let a = el; a && a !== document.body; a = a.parentElement) {
      const st = getComputedStyle(a);
      if (st.display === "none" || st.visibility === "hidden" || st.position === "fixed") {
        return true;
      }
    }
    return false;
  };
  // inside a box that scrolls or clips horizontally and itself fits the article
  const contained = (el, lo = left, hi = right) => {
    for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
      const ox = getComputedStyle(a).overflowX;
      if (ox === "auto" || ox === "scroll" || ox === "hidden" || ox === "clip") {
        const ar = a.getBoundingClientRect();
        if (ar.right <= hi + 1 && ar.left >= lo - 1) { return true; }
      }
    }
    return false;
  };
  const sticksOut = (r) => r.right > right + 1 || r.left < left - 1;
  const offenders = new Set();
  const wide = [];
  for (const el of column.querySelectorAll("*")) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0 || !sticksOut(r)) { continue; }
    if (el.closest("mjx-container") && el.tagName.toLowerCase() !== "mjx-container") { continue; }
    if (contained(el) || hidden(el)) { continue; }
    offenders.add(el);
    if (el.parentElement && offenders.has(el.parentElement)) { continue; }
    wide.push(`${describe(el)}: ${Math.round(r.width)} px wide, ` +
              `${Math.round(r.left)}..${Math.round(r.right)} px of a ${vw} px viewport ` +
              `(article ${Math.round(left)}..${Math.round(right)} px)`);
  }
  // the page itself: what makes the document scroll sideways (anywhere, not only the article)
  const page = [];
  if (doc.scrollWidth > vw + 1) {
    for (const el of document.body.querySelectorAll("*")) {
      const r = el.getBoundingClientRect();
      if (r.width === 0 || r.right <= vw + 1 || hidden(el) || contained(el, 0, vw)) { continue; }
      if (el.parentElement && el.parentElement.getBoundingClientRect().right > vw + 1
          && el.parentElement !== document.body) { continue; }
      page.push(describe(el) + `: right edge at ${Math.round(r.right)} px`);
      if (page.length >= 5) { break; }
    }
  }
  const math = [];
  for (const m of document.querySelectorAll("mjx-container")) {
    if (hidden(m)) { continue; }
    const inner = m.querySelector("mjx-math") || m;
    const r = inner.getBoundingClientRect();
    if (r.width === 0) { continue; }
    const display = m.getAttribute("display") === "true";
    const tex = (m.parentElement && m.parentElement.classList.contains("math")
                 ? m.parentElement.getAttribute("data-tex") : null) || describe(m);
    let cut = null, scrolls = false;
    for (let a = inner.parentElement; a && a !== document.body; a = a.parentElement) {
      const ox = getComputedStyle(a).overflowX;
      const ar = a.getBoundingClientRect();
      if ((ox === "hidden" || ox === "clip") && !scrolls
          && (r.right > ar.right + 1 || r.left < ar.left - 1)) {
        cut = `cut by ${describe(a).slice(0, 40)} (formula ${Math.round(r.width)} px, ` +
              `box ${Math.round(ar.width)} px)`;
        break;
      }
      if (ox === "auto" || ox === "scroll") {
        if (display && !scrolls && r.width > ar.width + 1) {
          cut = `SCROLL scrolls: ${Math.round(r.width)} px wide in a ${Math.round(ar.width)} px box`;
        }
        scrolls = true;  // what sticks out of this box is reached by scrolling it
        if (ar.right <= vw + 1 && ar.left >= -1) { break; }
      }
    }
    if (!cut && !scrolls && (r.right > vw + 1 || r.left < -1)) {
      cut = `off the page (${Math.round(r.left)}..${Math.round(r.right)} px of ${vw} px)`;
    }
    if (cut) { math.push([cut, (m.textContent || "").trim().slice(0, 40)]); }
  }
  return {scrollWidth: doc.scrollWidth, innerWidth: vw, column: Math.round(right - left),
          wide: wide.slice(0, 6), wideCount: wide.length, page: page, math: math};
}
"""

# Images and interactive figures of the article that are not numbered, captioned figures.
JS_FIGURES = r"""
(pattern) => {
  const numbered = new RegExp(pattern);
  const column = document.querySelector("article.bd-article") || document.querySelector("main");
  if (!column) { return []; }
  const out = [];
  for (const el of column.querySelectorAll("img, .js-plotly-plot")) {
    if (el.tagName === "IMG" && (el.naturalWidth < 64 || el.closest("a.headerlink, .sd-card-img"))) {
      continue;
    }
    if (el.closest(".js-plotly-plot") && el.closest(".js-plotly-plot") !== el) { continue; }
    const figure = el.closest("figure, div.figure");
    const caption = figure && figure.querySelector("figcaption, .caption");
    const text = caption ? caption.textContent.trim().replace(/\s+/g, " ") : "";
    if (numbered.test(text)) { continue; }
    let heading = "";
    for (let a = el; a && !heading; a = a.parentElement) {
      for (let s = a.previousElementSibling; s && !heading; s = s.previousElementSibling) {
        const h = s.matches("h1, h2, h3") ? s : s.querySelector("h1, h2, h3");
        if (h) { heading = h.textContent.replace(/#$/, "").trim(); }
      }
      if (a.matches && a.matches("section") && !heading) {
        const h = a.querySelector("h1, h2, h3");
        if (h) { heading = h.textContent.replace(/#$/, "").trim(); }
      }
    }
    const what = el.tagName === "IMG" ? "image " + (el.getAttribute("src") || "").split("/").pop()
                                      : "interactive figure";
    const why = !figure ? "is not a numbered, captioned figure"
        : text ? `has a caption without a number: "${text.slice(0, 50)}"` : "has no caption";
    out.push(`${what} under "${heading}" ${why}`);
  }
  return out;
}
"""

# Text of the page outside code blocks and rendered formulas: raw TeX delimiters left there
# mean MathJax did not typeset something.
JS_PAGE_FACTS = """
async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  if (window.varshiftFitted) { await window.varshiftFitted; }  // docs/_static/varshift-fit.js
  for (const img of document.images) { img.loading = "eager"; }
  await Promise.all(Array.from(document.images).map(
      img => img.complete ? null : new Promise(r => { img.onload = img.onerror = r; })));
  const main = document.querySelector("main") || document.body;
  const clone = main.cloneNode(true);
  clone.querySelectorAll("pre, code, script, style, mjx-container, .highlight, textarea")
       .forEach(e => e.remove());
  return {
    mathjax: !!(window.MathJax && MathJax.startup),
    mathElements: document.querySelectorAll(".math").length,
    mjx: document.querySelectorAll("mjx-container").length,
    mjxErrors: document.querySelectorAll("mjx-merror, [data-mjx-error]").length,
    text: clone.textContent,
    visible: main.innerText,
    images: Array.from(document.images).map(i => [i.getAttribute("src"), i.naturalWidth]),
    links: Array.from(document.querySelectorAll("a[href]")).map(a => a.href),
  };
}
"""

#: inline TeX that MathJax did not typeset: ``$...$`` with something TeX-like inside
RAW_DOLLARS = re.compile(r"\$(?=\S)[^$\n]{1,200}?(?<=\S)\$")


class _Ids(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("id", "name") and value:
                self.ids.add(value)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # no access log on stderr
        pass


def serve(root: Path):
    """Serve ``root`` on 127.0.0.1 (free port) in a daemon thread; return (server, base URL)."""
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def pages(root: Path) -> list[str]:
    """Every HTML page of the site, relative to ``root``, home first."""
    found = sorted(str(p.relative_to(root)) for p in root.rglob("*.html")
                   if not SKIP_DIRS & set(p.relative_to(root).parts[:-1]))
    return sorted(found, key=lambda p: (p != "index.html", p))


class LinkChecker:
    """Resolves internal URLs over HTTP (cached) and checks anchors against the page's ids."""

    def __init__(self):
        self.status: dict[str, int] = {}
        self.ids: dict[str, set] = {}

    def _fetch(self, url: str) -> int:
        if url not in self.status:
            try:
                with urllib.request.urlopen(url, timeout=30) as resp:
                    body = resp.read()
                    self.status[url] = resp.status
                    if "html" in resp.headers.get("Content-Type", ""):
                        parser = _Ids()
                        parser.feed(body.decode("utf-8", "replace"))
                        self.ids[url] = parser.ids
            except urllib.error.HTTPError as err:
                self.status[url] = err.code
            except OSError:
                self.status[url] = 0
        return self.status[url]

    def problem(self, href: str) -> str | None:
        url, _, fragment = href.partition("#")
        status = self._fetch(url)
        if status != 200:
            return f"link {href} -> HTTP {status or 'no answer'}"
        fragment = urllib.parse.unquote(fragment)
        if fragment and url in self.ids and fragment not in self.ids[url]:
            return f"link {href} -> no element with id {fragment!r}"
        return None


JS_CURVES = """
() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(
    gd => JSON.stringify((gd.data || []).map(t => Array.from(t.y || []))))
"""


def check_notebook(site: Path, rel: str, links: list[str]) -> list[str]:
    """The ``.ipynb`` download of an executed page: linked, present, valid, self-describing,
    and free of the site's own cells and helpers."""
    import nbformat  # noqa: PLC0415
    from notebooks import is_executed  # noqa: PLC0415 - docs/_ext, next to this script

    stem = rel[:-len(".html")]
    source = site / "_sources" / f"{stem}.md"
    if not source.is_file() or not is_executed(source.read_text(encoding="utf-8")):
        return []
    path = site / "_sources" / f"{stem}.ipynb"
    if not path.is_file():
        return [f"executed page without a notebook download (_sources/{stem}.ipynb)"]
    problems = []
    if not any(link.split("#")[0].endswith(f"_sources/{stem}.ipynb") for link in links):
        problems.append(f"page does not link its notebook _sources/{stem}.ipynb")
    try:
        nb = nbformat.read(str(path), as_version=4)
        nbformat.validate(nb)
    except Exception as err:  # noqa: BLE001 - an invalid notebook is a finding
        return [*problems, f"_sources/{stem}.ipynb is not a valid notebook: {err}"]
    if not nb.cells or "pip install varshift" not in nb.cells[0].source:
        problems.append(f"_sources/{stem}.ipynb: the first cell does not say `pip install varshift`")
    helpers = "|".join(SITE_HELPERS)
    for i, cell in enumerate(nb.cells):
        if SITE_ONLY in cell.get("metadata", {}).get("tags", []):
            problems.append(f"_sources/{stem}.ipynb: cell {i + 1} is tagged {SITE_ONLY}")
        elif cell.cell_type == "code":
            found = re.search(rf"^(%%writefile\s+({helpers})\.py|\s*(from|import)\s+({helpers})\b)"
                              r".*$", cell.source, flags=re.M)
            if found:
                problems.append(f"_sources/{stem}.ipynb: cell {i + 1} needs a helper of the "
                                f"site ({found.group(0).strip()[:60]!r})")
    return problems


def check_figures(page) -> list[str]:
    """Every image and interactive figure of the article: a numbered, captioned figure."""
    return [f"figure: {found}" for found in page.evaluate(JS_FIGURES, NUMBERED_CAPTION)]


def check_layout(page, width: str) -> list[str]:
    """Nothing wider than the viewport or the article's column; no formula cut or off-page; at
    1280 px no displayed formula that needs scrolling."""
    layout = page.evaluate(JS_LAYOUT)
    problems = []
    if layout["scrollWidth"] > layout["innerWidth"] + 1:
        problems.append(f"{width}: page {layout['scrollWidth']} px wide in a "
                        f"{layout['innerWidth']} px viewport: " + "; ".join(layout["page"]))
    problems += [f"{width}: wider than the article: {found}" for found in layout["wide"]]
    if layout["wideCount"] > len(layout["wide"]):
        problems.append(f"{width}: ... and {layout['wideCount'] - len(layout['wide'])} more "
                        "elements wider than the article")
    for what, text in layout["math"]:
        if what.startswith("SCROLL "):
            if width == "1280 px":  # a phone may scroll a long formula, a laptop should not
                problems.append(f"{width}: formula {what[7:]}: {text!r}")
            continue
        problems.append(f"{width}: formula {what}: {text!r}")
    return problems


def layout_summary(page) -> dict:
    """The numbers reported per page and width: document width, viewport, article column."""
    layout = page.evaluate(JS_LAYOUT)
    return {k: layout[k] for k in ("scrollWidth", "innerWidth", "column", "wideCount")}


def check_sliders(page) -> list[str]:
    """Click each Plotly slider's rail near its end: the figure's curves must change."""
    problems = []
    rails = page.locator(".js-plotly-plot .slider-container .slider-rail-touch-rect")
    if page.evaluate(JS_CURVES) and rails.count() == 0:
        return ["interactive figure without sliders"]
    for i in range(rails.count()):
        before = page.evaluate(JS_CURVES)
        rail = rails.nth(i)
        rail.scroll_into_view_if_needed()
        box = rail.bounding_box()
        if box is None:
            problems.append(f"slider {i + 1}: not visible")
            continue
        page.mouse.click(box["x"] + 0.92 * box["width"], box["y"] + box["height"] / 2)
        page.wait_for_timeout(300)
        if page.evaluate(JS_CURVES) == before:
            problems.append(f"slider {i + 1}: moving it did not change the curves")
    return problems


def _open(context, base: str, rel: str, problems: list[str]):
    """Open ``rel`` in a new tab of ``context``, recording console and network errors."""
    page = context.new_page()
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(
        f"request failed: {r.url} ({r.failure})"))
    page.goto(base + rel, wait_until="load", timeout=60_000)
    facts = page.evaluate(JS_PAGE_FACTS)
    page.wait_for_timeout(100)  # let late console messages arrive
    return page, facts


def _screenshot(page, shots: Path | None, rel: str, suffix: str) -> None:
    if shots is not None and rel in SCREENSHOTS:
        shots.mkdir(parents=True, exist_ok=True)
        page.evaluate("() => window.scrollTo(0, 0)")
        page.screenshot(path=str(shots / f"{SCREENSHOTS[rel]}{suffix}.png"), full_page=True)


def check_page(contexts: dict, base: str, rel: str, links: LinkChecker, shots: Path | None,
               site: Path | None = None, widths: dict | None = None) -> list[str]:
    """Every check of one page; ``contexts`` maps a width's label to its browser context (the
    first is the laptop's, where the width-independent checks run). ``widths`` collects the
    layout numbers per width."""
    problems: list[str] = []
    for n, (width, context) in enumerate(contexts.items()):
        try:
            page, facts = _open(context, base, rel, problems)
        except Exception as err:  # noqa: BLE001 - a broken page is a finding, not a crash
            return [*problems, f"could not load at {width}: {err}"]
        if n == 0:
            problems += _content_problems(page, facts, base, rel, links, site)
        elif facts["mjxErrors"]:
            problems.append(f"{width}: {facts['mjxErrors']} MathJax errors")
        problems += check_layout(page, width)
        if widths is not None:
            widths.setdefault(rel, {})[width] = layout_summary(page)
        _screenshot(page, shots, rel, "" if n == 0 else "-" + width.split()[0])
        page.close()
    return list(dict.fromkeys(problems))  # console errors repeat at each width


def _content_problems(page, facts, base, rel, links, site) -> list[str]:
    """The checks that do not depend on the width."""
    problems = []
    if facts["mathElements"]:
        if not facts["mathjax"]:
            problems.append(f"{facts['mathElements']} math elements but MathJax did not load")
        elif facts["mjx"] == 0:
            problems.append("math elements present but no MathJax container rendered")
    if facts["mjxErrors"]:
        problems.append(f"{facts['mjxErrors']} MathJax errors (bad TeX)")
    text = facts["text"]
    for raw in ("$$", "\\(", "\\)", "\\[", "\\]", "\\begin{"):
        if raw in text:
            at = text.index(raw)
            snippet = " ".join(text[max(0, at - 40):at + 40].split())
            problems.append(f"raw TeX {raw!r} left in the text: ...{snippet}...")
    for found in RAW_DOLLARS.finditer(text.replace("$$", "")):
        problems.append(f"raw TeX left in the text: {found.group(0)[:60]!r}")
    for src, width in facts["images"]:
        if not width:
            problems.append(f"image not loaded: {src}")
    for href in sorted(set(facts["links"])):
        if href.startswith(base):
            problem = links.problem(href)
            if problem:
                problems.append(problem)
    if site is not None:
        problems += check_notebook(site, rel, facts["links"])
    problems += [f"shows {found}" for found in page_guard.problems(facts["visible"])]
    problems += check_figures(page)
    problems += check_sliders(page)
    return problems


def site_text_problems(site: Path) -> list[str]:
    """``site_text_checks.check(site)`` (checks of what the pages say), where that module exists."""
    path = Path(__file__).resolve().parent / "site_text_checks.py"
    if not path.is_file():
        return []
    spec = importlib.util.spec_from_file_location("site_text_checks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [str(line) for line in module.check(site)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", type=Path, help="the built HTML folder (docs/_build/html)")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="Chromium executable")
    parser.add_argument("--screenshots", type=Path, default=None, help="folder for screenshots")
    parser.add_argument("--pages", nargs="*", default=None,
                        help="check only these pages (paths relative to the site)")
    parser.add_argument("--widths-json", type=Path, default=None,
                        help="write every page's measured widths (both viewports) to this file")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    site = args.site.resolve()
    all_pages = [p for p in pages(site) if args.pages is None or p in args.pages]
    server, base = serve(site)
    links = LinkChecker()
    failures: dict[str, list[str]] = {}
    widths: dict[str, dict] = {}
    start = time.perf_counter()

    def only_local(route):
        # Only the local server may be reached: the site must not need the internet.
        url = route.request.url
        return route.continue_() if url.startswith((base, "data:")) else route.abort()

    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, headless=True,
                                         args=CHROMIUM_ARGS)
            contexts = {}
            for label, (width, height) in WIDTHS.items():
                contexts[label] = browser.new_context(viewport={"width": width, "height": height})
                contexts[label].route("**/*", only_local)
            for rel in all_pages:
                problems = check_page(contexts, base, rel, links, args.screenshots, site, widths)
                if problems:
                    failures[rel] = problems
            browser.close()
    finally:
        server.shutdown()
    text = site_text_problems(site)
    if text:
        failures["(what the pages say: site_text_checks)"] = text
    elapsed = time.perf_counter() - start
    for rel, problems in failures.items():
        print(f"FAIL {rel}", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
    if args.widths_json is not None:
        import json  # noqa: PLC0415

        args.widths_json.write_text(json.dumps(widths, indent=1), encoding="utf-8")
    widest = {label: max((w[label]["scrollWidth"] for w in widths.values() if label in w),
                         default=0) for label in WIDTHS}
    internal = sum(1 for url in links.status)
    print(f"docs-check: {len(all_pages)} pages at "
          + " and ".join(f"{label} (widest page {px} px)" for label, px in widest.items())
          + f", {internal} internal URLs, {len(failures)} with problems, {elapsed:.1f} s"
          + (f"; screenshots in {args.screenshots}" if args.screenshots else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
