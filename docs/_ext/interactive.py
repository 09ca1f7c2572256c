"""Interactive figures of the site: Plotly curves with sliders over precomputed frames.

Page helper: :func:`slider_figure` evaluates a Python function (the formulas of
:mod:`varshift.theory`) on every combination of the sliders' values *at build time* and returns
the figure as HTML. The browser only looks the precomputed curves up when a slider moves (a few
lines of JavaScript, no formula), so there is no second implementation of the theory.

Sphinx extension (``setup``): copies ``plotly.min.js`` from the installed ``plotly`` package
into ``_static/`` and loads it only on the pages that hold a Plotly figure: the site works
offline, with no CDN.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
from pathlib import Path

import numpy as np

__all__ = ["slider_figure", "setup"]

IN_SITE = "VARSHIFT_DOCS_BUILD"  # set by docs/conf.py: plotly.js is served by the site
MARKER = "plotly-graph-div"

# On a slider move: the indices of all sliders pick one precomputed frame, whose curves replace
# the traces' y values. No formula here.
_LOOKUP_JS = """
(function () {
  var gd = document.getElementById('{plot_id}');
  // fit the column: redraw at the container's width whenever it changes (page layout, window)
  if (window.ResizeObserver) {
    new ResizeObserver(function () { Plotly.Plots.resize(gd); }).observe(gd.parentElement);
  }
  window.addEventListener('load', function () { Plotly.Plots.resize(gd); });
  var grid = GRID;
  var state = grid.start.slice();
  gd.on('plotly_sliderchange', function (e) {
    state[grid.names.indexOf(e.slider.name)] = parseInt(e.step.value, 10);
    var k = 0;
    for (var i = 0; i < state.length; i++) { k = k * grid.shape[i] + state[i]; }
    Plotly.restyle(gd, {y: grid.frames[k]}, grid.traces);
  });
})();
"""


def _frames(curves, sliders, digits):
    names = list(sliders)
    frames = []
    for combo in itertools.product(*(sliders[n] for n in names)):
        out = curves(**dict(zip(names, combo, strict=True)))
        frames.append([np.round(np.asarray(y, dtype=float), digits).tolist() for y in out.values()])
    return frames


def slider_figure(x, curves, sliders, start, *, labels=None, x_title="", y_title="",
                  title="", digits=4, height=720):
    """A Plotly figure of ``curves(**params)`` against ``x``, one slider per parameter.

    Args:
        x: the common abscissa (1-D).
        curves: ``f(**params) -> {trace name: y}``; evaluated on every combination of the
            sliders' values (``NaN`` leaves a gap).
        sliders: ``{parameter: [values]}``, in the order of the sliders.
        start: ``{parameter: value}``: the sliders' initial positions (one of their values).
        labels: ``{parameter: slider label}`` (default: the parameter names).
        x_title, y_title, title: axis and figure titles.
        digits: decimals kept in the precomputed frames.
        height: pixels.

    Returns:
        ``IPython.display.HTML`` with the figure (plotly.js from the site inside the docs, inline
        elsewhere).
    """
    import plotly.graph_objects as go
    from IPython.display import HTML

    names = list(sliders)
    if set(start) != set(names) or any(start[n] not in list(sliders[n]) for n in names):
        raise ValueError(f"start must give one of each slider's values for {names}; received {start}")
    labels = labels or {}
    frames = _frames(curves, sliders, digits)
    idx = [list(sliders[n]).index(start[n]) for n in names]
    k0 = int(np.ravel_multi_index(idx, [len(sliders[n]) for n in names]))
    x = np.asarray(x, dtype=float).tolist()
    first = curves(**start)
    fig = go.Figure([go.Scatter(x=x, y=y, name=name, mode="lines") for name, y
                     in zip(first, frames[k0], strict=True)])
    rows = (len(names) + 1) // 2
    fig.update_layout(
        title=title, height=height, margin={"t": 50, "b": 60 + 120 * rows},
        xaxis_title=x_title, yaxis_title=y_title, template="plotly_white",
        legend={"orientation": "h", "y": 1.08},
        sliders=[{"name": n, "active": idx[i], "len": 0.46, "x": 0.0 if i % 2 == 0 else 0.54,
                  "y": -0.17 - 0.3 * (i // 2), "yanchor": "top",
                  "currentvalue": {"prefix": f"{labels.get(n, n)} = "},
                  "steps": [{"label": f"{v:g}", "value": str(j), "method": "skip", "args": []}
                            for j, v in enumerate(sliders[n])]}
                 for i, n in enumerate(names)])
    grid = {"names": names, "shape": [len(sliders[n]) for n in names], "start": idx,
            "frames": frames, "traces": list(range(len(frames[0])))}
    html = fig.to_html(full_html=False, include_plotlyjs=False if os.environ.get(IN_SITE) else True,
                       post_script=_LOOKUP_JS.replace("GRID", json.dumps(grid, allow_nan=True)
                                                      .replace("NaN", "null")),
                       config={"displaylogo": False, "responsive": True})
    return HTML(html)


def _copy_plotly(app, exception):
    if exception is None and app.builder.format == "html":
        import plotly

        src = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
        dest = Path(app.outdir) / "_static" / "plotly.min.js"
        if not dest.exists() or dest.stat().st_size != src.stat().st_size:
            shutil.copy2(src, dest)


def _add_plotly(app, pagename, templatename, context, doctree):
    from docutils import nodes

    if doctree is not None and any(MARKER in n.astext() for n in doctree.findall(nodes.raw)):
        app.add_js_file("plotly.min.js", priority=100)


def setup(app):
    app.connect("html-page-context", _add_plotly)
    app.connect("build-finished", _copy_plotly)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
