"""The record store ``<out>/runs``: where a finished run's record lives, and whether it can be
trusted.

Layout: ``<out>/runs/<key>/record.json`` (written atomically when the run has finished, with
a SHA-256 checksum of its content) and ``<out>/runs/<key>/work/`` (the trainer's own folder:
checkpoints to resume from, ``model.keras``). A record is validated whenever it is read
(:meth:`RunStore.status`): a torn, emptied or hand-edited one is *damaged*; ``run`` moves it
aside (``record.json.damaged-<time>``) and trains the run again. A statistic that cannot be
true (:func:`check_statistics`) is never stored.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import time
from pathlib import Path

from reproduce._io import atomic_write_json, read_json, to_jsonable
from reproduce.plan import run_key

__all__ = ["RunStore", "DamagedRecord", "BadStatistic", "check_statistics", "validate_record",
           "record_checksum", "POSITIVE_STATISTICS"]

class DamagedRecord(ValueError):
    """A ``record.json`` that cannot be trusted: unreadable, not a record, or edited."""


#: fields every stored record has (besides ``checksum``)
RECORD_FIELDS = {"key": str, "config": dict, "record": dict}


def record_checksum(wrapped):
    """SHA-256 of a stored record's content (every field but ``checksum``), as canonical JSON."""
    body = {k: v for k, v in wrapped.items() if k != "checksum"}
    blob = json.dumps(to_jsonable(body), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def validate_record(wrapped, key):
    """``DamagedRecord`` naming the first problem unless ``wrapped`` is the intact record of ``key``."""
    if not isinstance(wrapped, dict):
        raise DamagedRecord(f"not a JSON object but {type(wrapped).__name__}")
    for name, kind in RECORD_FIELDS.items():
        if not isinstance(wrapped.get(name), kind):
            raise DamagedRecord(f"field {name!r} is missing or not a {kind.__name__}")
    inner = wrapped["record"]
    if not isinstance(inner.get("final"), dict) or not isinstance(inner.get("history"), list):
        raise DamagedRecord("the trainer's record lacks 'final' or 'history'")
    if wrapped["key"] != key or run_key(wrapped["config"]) != key:
        raise DamagedRecord(f"it is not the record of run {key} (its key or config differs)")
    if "checksum" not in wrapped:
        raise DamagedRecord("it has no checksum (written by an older version)")
    if wrapped["checksum"] != record_checksum(wrapped):
        raise DamagedRecord("its checksum does not match its content (edited or corrupted)")


class BadStatistic(ValueError):
    """A record holds a statistic that cannot be true (a variance of 0, a NaN): not stored."""


#: statistics of a record's per-layer shift rows (``record.final.shift``) that are variances
#: or ratios of variances: finite and > 0 whenever they are measured
POSITIVE_STATISTICS = ("moving_var", "real_var", "shift", "ratio")
#: statistics that are undefined for some layers and then stored as null (a ratio of means of
#: opposite signs): NaN is allowed there and only there
UNDEFINED_AS_NULL = ("mean_ratio",)


def _non_finite(value, where):
    """``(where, value)`` of the first NaN or infinity in ``value`` (nested), else ``None``."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k not in UNDEFINED_AS_NULL:
                found = _non_finite(v, f"{where}.{k}")
                if found:
                    return found
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found = _non_finite(v, f"{where}[{i}]")
            if found:
                return found
    elif hasattr(value, "dtype") and hasattr(value, "tolist"):  # numpy values and arrays
        return _non_finite(value.tolist(), where)
    elif isinstance(value, numbers.Real) and not isinstance(value, bool) \
            and not math.isfinite(float(value)):
        return where, value
    return None


def check_statistics(key, record):
    """``BadStatistic`` (one line: run, statistic, value, expectation) unless every statistic of
    the trainer's ``record`` can be true: every :data:`POSITIVE_STATISTICS` of a shift row is a
    finite number > 0, and no number of ``final`` or ``history`` is NaN or infinite (but
    :data:`UNDEFINED_AS_NULL`)."""
    final = record.get("final") if isinstance(record, dict) else None
    for i, row in enumerate((final or {}).get("shift") or []):
        for name in POSITIVE_STATISTICS:
            if not isinstance(row, dict) or name not in row:
                continue
            value = row[name]
            ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
            if not (ok and math.isfinite(float(value)) and float(value) > 0):
                raise BadStatistic(f"run {key}: statistic final.shift[{i}].{name} "
                                   f"({row.get('bn_layer', '?')}) is {value!r}; expected a finite "
                                   "number > 0 (a variance or a ratio of variances); not stored")
    for part in ("final", "history"):
        found = _non_finite((record or {}).get(part), part)
        if found:
            raise BadStatistic(f"run {key}: statistic {found[0]} is {found[1]!r}; expected a "
                               "finite number; not stored")


class RunStore:
    """The cache folder ``<out>/runs``: where records live, how they are looked up and checked."""

    def __init__(self, out_dir):
        self.root = Path(out_dir) / "runs"

    def run_dir(self, key):
        return self.root / key

    def record_path(self, key):
        return self.run_dir(key) / "record.json"

    def write(self, key, wrapped):
        """Write the record of ``key`` atomically, with its checksum; a record with a statistic
        that cannot be true is refused first (:func:`check_statistics`, ``BadStatistic``)."""
        check_statistics(key, wrapped.get("record"))
        wrapped = to_jsonable({k: v for k, v in wrapped.items() if k != "checksum"})
        wrapped["checksum"] = record_checksum(wrapped)
        atomic_write_json(self.record_path(key), wrapped)

    def status(self, key):
        """``("done", None)``, ``("missing", None)`` or ``("damaged", reason)``; changes nothing.

        A record moved aside earlier (:meth:`quarantine`) and not trained again since counts
        as damaged, so results built from it are not mistaken for current ones.
        """
        path = self.record_path(key)
        if not path.is_file():
            aside = self.damaged_files(key)
            if aside:
                return "damaged", f"moved aside to {aside[-1]} and not trained again"
            return "missing", None
        try:
            wrapped = read_json(path)
        except (OSError, ValueError) as err:  # torn or unreadable
            return "damaged", f"unreadable ({type(err).__name__}: {str(err).splitlines()[0]})"
        try:
            validate_record(wrapped, key)
        except DamagedRecord as err:
            return "damaged", str(err)
        return "done", None

    def damaged_files(self, key):
        return sorted(self.run_dir(key).glob("record.json.damaged-*"))

    def done(self, key):
        """Whether ``key`` has an intact record."""
        return self.status(key)[0] == "done"

    def load(self, key):
        """The intact record of ``key``; ``DamagedRecord`` (naming the file) otherwise."""
        state, reason = self.status(key)
        if state != "done":
            raise DamagedRecord(f"run record {self.record_path(key)} is "
                                f"{'missing' if state == 'missing' else 'damaged: ' + reason}")
        return read_json(self.record_path(key))

    def quarantine(self, key):
        """Move a damaged ``record.json`` aside (``record.json.damaged-<UTC time>``); its path."""
        path = self.record_path(key)
        if not path.exists():
            return None
        aside = path.with_name(f"record.json.damaged-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
        os.replace(path, aside)
        return aside

    def model_path(self, key):
        return self.run_dir(key) / "work" / "model.keras"

    def _twins(self, spec):
        return [run_key(cfg) for cfg in
                (spec.config, {**spec.config, "save_model": not spec.config["save_model"]})]

    def find(self, spec):
        """The record of ``spec``, or of its ``save_model`` twin; ``None`` if not trained (or
        damaged: :meth:`why_missing` says which)."""
        for key in self._twins(spec):
            if self.done(key):
                return self.load(key)
        return None

    def why_missing(self, spec):
        """Why :meth:`find` gives nothing: ``"is damaged: ..."`` or ``"has not been trained"``."""
        for key in self._twins(spec):
            state, reason = self.status(key)
            if state == "damaged":
                return f"has a damaged record ({reason})"
        return "has not been trained"


