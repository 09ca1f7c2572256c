"""Open every page of the built documentation in headless Chromium and check it.

Usage: ``python docs/_ext/check_site.py docs/_build/html [--chromium /usr/bin/chromium]
[--screenshots DIR]`` (``nox -s docs-check`` runs it). The site is served on 127.0.0.1 by a
threaded ``http.server``; Playwright drives the system Chromium (``executable_path``, no
``playwright install``). Requests that leave 127.0.0.1 are blocked, so the check also proves the
site works offline. For every HTML page:

- no console errors and no uncaught page errors, no failed requests;
- formulas rendered: pages with math have MathJax containers and no raw ``$$``, ``\\(``,
  ``\\[`` left in their text (code blocks excluded);
- every ``<img>`` loaded (``naturalWidth > 0``);
- every internal link resolves (HTTP 200) and every ``#anchor`` exists on its target page;
- every executed page (a MyST notebook with code cells) links its ``.ipynb`` download, which
  exists, is a valid notebook (``nbformat``) and says in its first cell that it runs after
  ``pip install varshift``;
- every interactive (Plotly) figure responds: clicking each slider's rail changes the curves;
- at 1280 px, no element is wider than the article's column: anything that sticks out must sit
  inside a box that scrolls (``overflow-x: auto``) and itself fits the column;
- no page shows a traceback, "File not found" or a temporary path (the patterns of
  ``page_guard``, on the text the browser shows, code blocks included).

Screenshots (full page, 1280 px wide) of the pages a reviewer reads first are saved. Exit
status 1 if any check fails.
"""

from __future__ import annotations

import argparse
import functools
import http.server
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
SCREENSHOTS = {"index.html": "home.png", "summary.html": "summary.png", "theory.html": "theory.png",
               "guidelines.html": "guidelines.png", "diagnose.html": "diagnose.png",
               "reproduction/index.html": "reproduction-index.png",
               "reproduction/fig4.html": "fig4.png", "reproduction/table3.html": "table3.png",
               "reproduction/fig6.html": "fig6.png", "cite.html": "cite.png"}

# Elements that stick out of the article's column (1 px of slack), unless they sit inside a
# box that scrolls horizontally and itself fits the column.
JS_TOO_WIDE = r"""
() => {
  const column = document.querySelector("article.bd-article") || document.querySelector("main");
  if (!column) { return []; }
  const c = column.getBoundingClientRect();
  const out = [];
  for (const el of column.querySelectorAll("*")) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) { continue; }
    if (r.right <= c.right + 1 && r.left >= c.left - 1) { continue; }
    let contained = false;
    for (let a = el.parentElement; a && a !== column; a = a.parentElement) {
      const ox = getComputedStyle(a).overflowX;
      if (ox === "auto" || ox === "scroll" || ox === "hidden") {
        const ar = a.getBoundingClientRect();
        contained = ar.right <= c.right + 1 && ar.left >= c.left - 1;
        break;
      }
    }
    if (contained) { continue; }
    const name = el.tagName.toLowerCase() + (el.className && typeof el.className === "string"
        ? "." + el.className.trim().split(/\s+/).slice(0, 2).join(".") : "");
    out.push(`${name} ${Math.round(r.width)} px wide, column ${Math.round(c.width)} px ` +
             `(${Math.round(r.left - c.left)}..${Math.round(r.right - c.left)}): ` +
             JSON.stringify((el.textContent || "").trim().slice(0, 50)));
    if (out.length >= 5) { break; }
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
    """The ``.ipynb`` download of an executed page: linked, present, valid, self-describing."""
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
    return problems


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


def check_page(context, base: str, rel: str, links: LinkChecker, shots: Path | None,
               site: Path | None = None) -> list[str]:
    problems: list[str] = []
    page = context.new_page()
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(
        f"request failed: {r.url} ({r.failure})"))
    try:
        page.goto(base + rel, wait_until="load", timeout=60_000)
        facts = page.evaluate(JS_PAGE_FACTS)
        page.wait_for_timeout(100)  # let late console messages arrive
    except Exception as err:  # noqa: BLE001 - a broken page is a finding, not a crash
        page.close()
        return [*problems, f"could not load: {err}"]
    if facts["mathElements"]:
        if not facts["mathjax"]:
            problems.append(f"{facts['mathElements']} math elements but MathJax did not load")
        elif facts["mjx"] == 0:
            problems.append("math elements present but no MathJax container rendered")
    if facts["mjxErrors"]:
        problems.append(f"{facts['mjxErrors']} MathJax errors (bad TeX)")
    for raw in ("$$", "\\(", "\\)", "\\[", "\\]", "\\begin{"):
        if raw in facts["text"]:
            at = facts["text"].index(raw)
            snippet = " ".join(facts["text"][max(0, at - 40):at + 40].split())
            problems.append(f"raw TeX {raw!r} left in the text: ...{snippet}...")
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
    problems += check_sliders(page)
    problems += [f"wider than its column: {found}" for found in page.evaluate(JS_TOO_WIDE)]
    if shots is not None and rel in SCREENSHOTS:
        shots.mkdir(parents=True, exist_ok=True)
        page.evaluate("() => window.scrollTo(0, 0)")
        page.screenshot(path=str(shots / SCREENSHOTS[rel]), full_page=True)
    page.close()
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", type=Path, help="the built HTML folder (docs/_build/html)")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="Chromium executable")
    parser.add_argument("--screenshots", type=Path, default=None, help="folder for screenshots")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    site = args.site.resolve()
    all_pages = pages(site)
    server, base = serve(site)
    links = LinkChecker()
    failures: dict[str, list[str]] = {}
    start = time.perf_counter()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, headless=True,
                                         args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            # Only the local server may be reached: the site must not need the internet.
            context.route("**/*", lambda route: route.continue_()
                          if route.request.url.startswith(base) or route.request.url.startswith("data:")
                          else route.abort())
            for rel in all_pages:
                problems = check_page(context, base, rel, links, args.screenshots, site)
                if problems:
                    failures[rel] = problems
            browser.close()
    finally:
        server.shutdown()
    elapsed = time.perf_counter() - start
    for rel, problems in failures.items():
        print(f"FAIL {rel}", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
    internal = sum(1 for url in links.status)
    print(f"docs-check: {len(all_pages)} pages, {internal} internal URLs, "
          f"{len(failures)} page(s) with problems, {elapsed:.1f} s"
          + (f"; screenshots in {args.screenshots}" if args.screenshots else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
