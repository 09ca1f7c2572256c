"""Compare two ``python -m reproduce run`` output folders: same runs, same numbers.

Usage: ``python tools/compare_results.py BEFORE AFTER`` (run from the repository root of the
*after* tree). Every run record of BEFORE is matched to AFTER by its key; a Uout run planned
before the ``rate`` -> ``beta`` rename (its config held ``rate``) is mapped to the key of the
same config with ``beta``. For each pair the per-epoch history (without the ``seconds`` of the
training pass), the ``final`` block, the data info and the seed must be identical to the last
bit; config differences are listed (renamed or added fields are expected). Every CSV file of
the targets must be byte-identical, and every target's verdicts (claims, outcomes and the
evidence text with its numbers) identical. Exit status 1 on any difference in numbers.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from reproduce.plan import run_key  # noqa: E402

#: fields whose values legitimately differ between two runs of the same configuration
TIMING = {"seconds"}


def _records(root):
    out = {}
    for path in sorted(Path(root, "runs").glob("*/record.json")):
        wrapped = json.loads(path.read_text())
        out[wrapped["key"]] = wrapped
    return out


def mapped_key(wrapped):
    config = dict(wrapped["config"])
    if config.get("noise") == "uout" and "rate" in config:
        config["beta"] = config.pop("rate")
        return run_key(config), "uout rate -> beta"
    return wrapped["key"], ""


def _strip(history):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in history]


def _data_info(info):
    return {k: v for k, v in info.items() if k not in ("subset", "subset_of", "source")}


def compare_runs(before, after):
    problems, notes = [], []
    a_recs, b_recs = _records(before), _records(after)
    matched = set()
    for key, old in a_recs.items():
        new_key, why = mapped_key(old)
        if why:
            notes.append(f"{key} -> {new_key} ({why})")
        new = b_recs.get(new_key)
        if new is None:
            problems.append(f"run {key} ({new_key}) missing after")
            continue
        matched.add(new_key)
        ra, rb = old["record"], new["record"]
        for part, fa, fb in (("history", _strip(ra["history"]), _strip(rb["history"])),
                             ("final", ra["final"], rb["final"]),
                             ("data", _data_info(ra["data"]), _data_info(rb["data"])),
                             ("seed", ra["seed"], rb["seed"]),
                             ("deterministic", ra["deterministic"], rb["deterministic"])):
            if fa != fb:
                problems.append(f"run {key}: {part} differs")
        ca, cb = ra["config"], rb["config"]
        diff = sorted(k for k in set(ca) | set(cb) if ca.get(k, "<absent>") != cb.get(k, "<absent>"))
        if diff:
            notes.append(f"run {key}: config fields differ: "
                         + ", ".join(f"{k}: {ca.get(k, '<absent>')!r} -> {cb.get(k, '<absent>')!r}"
                                     for k in diff))
    for key in sorted(set(b_recs) - matched):
        problems.append(f"run {key} only after")
    return len(a_recs), problems, notes


def compare_csvs(before, after):
    problems, n = [], 0
    for path in sorted(Path(before).rglob("*.csv")):
        rel = path.relative_to(before)
        if rel.parts[0] == "runs":
            continue
        n += 1
        other = Path(after, rel)
        if not other.is_file():
            problems.append(f"{rel} missing after")
        elif other.read_bytes() != path.read_bytes():
            problems.append(f"{rel} differs")
    return n, problems


def compare_verdicts(before, after):
    """Every target's verdicts (claim, outcome, evidence with its numbers) and run counts."""
    problems, n = [], 0
    for path in sorted(Path(before).glob("*/result.json")):
        rel = path.relative_to(before)
        n += 1
        other = Path(after, rel)
        if not other.is_file():
            problems.append(f"{rel} missing after")
            continue
        a, b = json.loads(path.read_text()), json.loads(other.read_text())
        for field in ("verdicts", "runs", "runs_used"):
            if a.get(field) != b.get(field):
                problems.append(f"{rel}: {field} differ")
    return n, problems


def main(argv):
    before, after = argv
    n_runs, run_problems, notes = compare_runs(before, after)
    n_csv, csv_problems = compare_csvs(before, after)
    n_targets, verdict_problems = compare_verdicts(before, after)
    csv_problems += verdict_problems
    for line in notes:
        print("note:", line)
    for line in run_problems + csv_problems:
        print("DIFFERENT:", line)
    print(f"{n_runs} runs compared ({len(run_problems)} with different numbers), "
          f"{n_csv} CSV files and {n_targets} targets' verdicts compared "
          f"({len(csv_problems)} different)")
    return 1 if run_problems or csv_problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
