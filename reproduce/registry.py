"""The targets (one module per paper artefact), what runs they need, and building them.

A target module in :mod:`reproduce.targets` defines

- ``TITLE``: one line, with the paper's numbering;
- ``ARTEFACTS``: the files it writes into ``<out>/<target>/``;
- ``runs(profile) -> list[RunSpec]``: the training runs it reads (``[]`` for the theory
  targets, which compute everything themselves);
- ``build(ctx) -> dict``: reads the runs' records through ``ctx``, writes its artefacts and
  returns ``{"verdicts": [...], "markdown": "..."}``.

Shared runs are deduplicated over the whole plan by their configuration hash, so a run
needed by Fig. 4, Fig. 5 and Table 3 is trained once.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path

from reproduce._io import atomic_write_json, read_json
from reproduce.claims import FAILS, HOLDS, INCONCLUSIVE, UNTESTED, VERDICTS, Claim, untested
from reproduce.plan import merge_specs
from reproduce.store import RunStore

__all__ = ["TARGETS", "get_target", "plan", "Context", "build_target", "HOLDS", "FAILS",
           "INCONCLUSIVE", "UNTESTED", "VERDICTS"]

#: target name -> module, in the order of the paper (theory first)
TARGETS = ("eq8", "eq14", "eq15", "fig1", "fig3", "fig4", "fig5", "fig6", "table1", "table3",
           "table4", "table6")


def get_target(name):
    """The module of target ``name``; ``KeyError`` naming the known targets otherwise."""
    if name not in TARGETS:
        raise KeyError(f"unknown target {name!r}; expected one of: {', '.join(TARGETS)}")
    return importlib.import_module(f"reproduce.targets.{name}")


def plan(profile, targets):
    """The deduplicated training runs that ``targets`` need under ``profile``."""
    specs = []
    for name in targets:
        specs.extend(get_target(name).runs(profile))
    return merge_specs(specs)


class Context:
    """What a target's ``build`` sees: the profile, folders and the finished runs."""

    def __init__(self, profile, out_dir, name, *, data_dir=None, partial=False):
        self.profile = profile
        self.partial = partial
        self.out_dir = Path(out_dir)
        self.name = name
        self.data_dir = data_dir
        self.store = RunStore(out_dir)
        self.dir = self.out_dir / name
        self.dir.mkdir(parents=True, exist_ok=True)

    def record(self, spec):
        """The trainer's record of ``spec`` (``RuntimeError`` if it was not trained)."""
        rec = self.store.find(spec)
        if rec is None:
            raise RuntimeError(f"run {spec.label} ({spec.key}) {self.store.why_missing(spec)}; "
                               f"run `python -m reproduce run {self.name}` first")
        return rec["record"]

    def available(self, specs):
        """``specs`` with a finished run; all of them (missing ones raise later) unless the
        target is built from a partial cache (``run --cached-only``)."""
        specs = list(specs)
        return [s for s in specs if self.store.find(s) is not None] if self.partial else specs

    def model_path(self, spec):
        """Where the run saved its Keras model (``save_model=True`` runs)."""
        return self.store.model_path(spec.key)

    def seeds(self):
        return self.profile.seed_list()


def build_target(name, profile, out_dir, *, data_dir=None, partial=False):
    """Build one target and write ``<out>/<target>/result.json``; return that result.

    ``partial=True`` (``run --cached-only``) builds from the runs cached so far: the verdicts
    say how many of the target's runs they rest on, and a target none of whose runs (or not
    enough of them) exist is written as "not tested".
    """
    module = get_target(name)
    ctx = Context(profile, out_dir, name, data_dir=data_dir, partial=partial)
    start = time.time()
    specs = module.runs(profile)
    have = len(ctx.available(specs)) if partial else len(specs)
    try:
        if specs and have == 0:
            raise RuntimeError("none of its training runs is cached")
        result = module.build(ctx)
    except Exception as err:
        if not partial:
            raise
        result = {"verdicts": [untested(Claim("(all claims of this target)", "above", 0.0, ""),
                                        f"partial build: {err}")],
                  "markdown": f"Not built: {have} of {len(specs)} runs cached ({err})."}
    else:
        missing = [a for a in module.ARTEFACTS if not (ctx.dir / a).is_file()]
        if missing:
            raise RuntimeError(f"target {name} did not write {', '.join(missing)}")
        if have < len(specs):
            note = f" [partial: {have} of {len(specs)} runs]"
            for v in result["verdicts"]:
                v["evidence"] += note
            result["markdown"] = (f"**Partial build: {have} of {len(specs)} runs were cached.**"
                                  "\n\n" + result["markdown"])
    result = {"target": name, "title": module.TITLE, "profile": profile.name,
              "artefacts": list(module.ARTEFACTS), "build_seconds": time.time() - start,
              "runs": len(specs), "runs_used": have, **result}
    atomic_write_json(ctx.dir / "result.json", result)
    return result


def load_result(out_dir, name):
    """The saved result of target ``name`` or ``None`` if it was not built."""
    path = Path(out_dir) / name / "result.json"
    return read_json(path) if path.is_file() else None
