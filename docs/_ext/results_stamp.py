"""Re-execute the reproduction pages when, and only when, the results they show change.

MyST-NB's execution cache is keyed on a page's code. The reproduction pages' code is constant
(``show_artefact("fig4")``) while the files it reads in ``results/`` change, so on every read
this extension replaces the placeholder ``RESULTS_FINGERPRINT`` in those pages with a hash of
the results (:func:`vsdocs.results_fingerprint`), and marks the pages outdated for Sphinx when
the hash differs from the previous build's.

Before that it makes the shown results ready (:func:`shown_results.stage`): published run
records are rebuilt with the current code (no training) once per change of records or code.
"""

from __future__ import annotations

import re

import shown_results
import vsdocs
from sphinx.util import logging

LOGGER = logging.getLogger(__name__)

PLACEHOLDER = "RESULTS_FINGERPRINT"
PREFIX = "reproduction/"
#: pages outside reproduction/ that quote the verdicts (their first code cell carries the
#: placeholder too)
QUOTING = ("summary", "guidelines", "researchers")


def _stamped(docname: str) -> bool:
    return docname.startswith(PREFIX) or docname in QUOTING


def _on_source_read(app, docname, source):
    if _stamped(docname) and PLACEHOLDER in source[0]:
        source[0] = source[0].replace(PLACEHOLDER, app.config.varshift_results_fingerprint)


def _fill_commits_since(app, doctree, docname):
    """Replace the "commits before this build" placeholders of the page headers."""
    from docutils import nodes

    pattern = re.compile(re.escape(shown_results.SINCE_PLACEHOLDER) + r"([0-9a-f]{7,40})")
    for node in list(doctree.findall(nodes.Text)):
        if shown_results.SINCE_PLACEHOLDER in node:
            text = pattern.sub(lambda m: shown_results.commits_since_text(m.group(1), False),
                               str(node))
            node.parent.replace(node, nodes.Text(text))


def _on_outdated(app, env, added, changed, removed):
    current = app.config.varshift_results_fingerprint
    previous = getattr(env, "varshift_results_fingerprint", None)
    env.varshift_results_fingerprint = current
    if previous is None or previous == current:
        return []
    return [doc for doc in env.found_docs if _stamped(doc) and doc not in added | changed]


def _on_config_inited(app, config):
    choice = shown_results.choose()
    shown_results.stage(choice, log=LOGGER.info)
    LOGGER.info(f"varshift docs: reproduction pages show the {choice.origin} {choice.profile} "
                f"results ({choice.folder})")
    config.varshift_results_fingerprint = vsdocs.results_fingerprint()


def setup(app):
    app.add_config_value("varshift_results_fingerprint", "", "")  # not a rebuild trigger itself
    app.connect("config-inited", _on_config_inited)
    app.connect("source-read", _on_source_read)
    app.connect("env-get-outdated", _on_outdated)
    app.connect("doctree-resolved", _fill_commits_since)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
