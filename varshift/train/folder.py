"""A run's folder: the finished record, the progress of an unfinished run and its checkpoint.

Layout of ``out_dir``:

- ``record.json``: the result, written atomically at the end (its presence means "done");
- ``progress.json``: the config, the history so far, the name of the matching checkpoint and
  the wall time, written atomically with every checkpoint;
- ``checkpoint_{epoch}.keras``: model + optimiser state after ``epoch`` epochs; only the
  latest is kept, and none once the record is written;
- ``model.keras``: the final model (``save_model``).

The checkpoint of epoch ``k`` is written before ``progress.json`` names it, so an interrupt
between the two writes leaves a consistent pair.
"""

from __future__ import annotations

import contextlib
import json
import os

from varshift._io import atomic_path, atomic_write_json

__all__ = ["RunFolder"]


class RunFolder:
    """The files of one run in ``out_dir`` (see the module docstring).

    Args:
        out_dir: the folder (created).
        config: the run's config as a dict (:meth:`varshift.train.RunConfig.to_dict`); a folder
            holding another config is refused.
    """

    def __init__(self, out_dir, config):
        self.dir = os.fspath(out_dir)
        os.makedirs(self.dir, exist_ok=True)
        self.config = config
        self.record_path = os.path.join(self.dir, "record.json")
        self.progress_path = os.path.join(self.dir, "progress.json")
        self.model_path = os.path.join(self.dir, "model.keras")

    def _check_config(self, stored):
        if stored != self.config:
            raise ValueError(
                f"out_dir {self.dir!r} holds a run with a different config; use another out_dir "
                "or resume=False to overwrite it.")

    def start(self, resume):
        """The finished record when resuming a done run; else ``None`` (``resume=False``
        forgets an earlier run's record and progress)."""
        if resume and os.path.isfile(self.record_path):
            with open(self.record_path) as fh:
                done = json.load(fh)
            self._check_config(done.get("config"))
            return done
        if not resume:
            for path in (self.record_path, self.progress_path):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
        return None

    def progress(self):
        """``(checkpoint path, history, wall time)`` of an unfinished run, or ``None``."""
        if not os.path.isfile(self.progress_path):
            return None
        with open(self.progress_path) as fh:
            state = json.load(fh)
        self._check_config(state.get("config"))
        checkpoint = os.path.join(self.dir, state.get("checkpoint", ""))
        if not os.path.isfile(checkpoint):
            return None  # checkpoint gone: start afresh
        return checkpoint, state["history"], float(state.get("wall_time", 0.0))

    def save_epoch(self, model, history, wall_time):
        """Checkpoint after ``len(history)`` epochs, then the progress naming it."""
        name = f"checkpoint_{len(history)}.keras"
        save_model(model, os.path.join(self.dir, name))
        atomic_write_json(self.progress_path, {
            "config": self.config, "history": history, "checkpoint": name,
            "wall_time": wall_time})
        self.remove_checkpoints(keep=name)

    def finish(self, record, model=None):
        """Write ``model.keras`` (if ``model``) and the record; drop the training checkpoint."""
        if model is not None:
            save_model(model, self.model_path)
        atomic_write_json(self.record_path, record)
        self.remove_checkpoints()

    def remove_checkpoints(self, keep=None):
        """Delete every ``checkpoint_*.keras`` but ``keep``."""
        for name in os.listdir(self.dir):
            if name.startswith("checkpoint_") and name.endswith(".keras") and name != keep:
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(self.dir, name))


def save_model(model, path):
    """``model.save(path)`` atomically."""
    with atomic_path(path) as tmp:
        model.save(tmp)
