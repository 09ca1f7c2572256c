"""Run the downloaded notebook of every page with only varshift installed.

Usage: ``python docs/_ext/run_notebooks.py docs/_build/html [--pages theory dropout ...]
[--keep DIR]`` (``nox -s docs-check`` runs it after the browser check).

1. A fresh virtual environment (``python -m venv`` in a temporary folder) gets
   ``pip install "<repository>[tensorflow]"`` (varshift and a Keras backend, nothing of the
   documentation) and the two packages that execute a notebook, ``ipykernel`` and ``nbclient``.
   Where pip cannot install them (no network and nothing in pip's cache), the script says so
   in one line and exits 0: it skips, it does not fail.
2. Each page's download, ``_sources/<page>.ipynb`` of the built site, is copied alone
   into an empty folder and executed there by that environment's kernel, with an environment
   that names neither the repository nor the documentation's helpers (no ``PYTHONPATH``). The
   notebook's own first cell installs what else the page imports (matplotlib, ...), as it would
   for a reader.
3. One line per notebook: ``ok`` with its time, or the cell that failed and its error. Exit
   status 1 if any notebook failed.

Every page's download is run: the cells that read the repository's run records
(``docs/results``) are tagged ``site-only`` and are not in the downloads, so the reproduction
pages' notebooks hold only their exercises. The PyTorch page needs ``varshift[torch]``
(PyTorch, a download of several GB): it runs with ``--with-torch`` (as ``nox -s docs-check``
runs it) and is left out, with that reason, without.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: page (or folder/) -> why its download is not run here (the cells that read the repository's
#: run records are tagged ``site-only`` and left out of the downloads, so none is excluded)
EXCLUDED: dict[str, str] = {}
TORCH_PAGES = {"diagnose_torch": "needs PyTorch (varshift[torch], several GB): run with --with-torch"}
#: per cell, seconds (a page that trains a small network takes a minute or two on a laptop)
CELL_TIMEOUT = 1200

RUNNER = r"""
import sys, time
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

path, folder = sys.argv[1], sys.argv[2]
nb = nbformat.read(path, as_version=4)
client = NotebookClient(nb, timeout=int(sys.argv[3]), kernel_name="python3",
                        resources={"metadata": {"path": folder}})
try:
    client.execute()
except CellExecutionError as err:
    cell = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code" and any(
        o.get("output_type") == "error" for o in c.get("outputs", []))), None)
    error = next((o for c in nb.cells for o in c.get("outputs", [])
                  if o.get("output_type") == "error"), {})
    line = (nb.cells[cell].source.strip().splitlines() or [""])[0][:70] if cell is not None else ""
    print(f"cell {cell + 1 if cell is not None else '?'} ({line!r}): "
          f"{error.get('ename', type(err).__name__)}: {str(error.get('evalue', err))[:300]}")
    sys.exit(1)
finally:
    nbformat.write(nb, path)
"""


def executed_pages(site: Path) -> list[str]:
    """The pages whose ``.ipynb`` download the built site holds (``_sources/<page>.ipynb``)."""
    sources = site / "_sources"
    return sorted(str(p.relative_to(sources).with_suffix("")) for p in sources.rglob("*.ipynb"))


def excluded(page: str, with_torch: bool) -> str | None:
    """Why ``page``'s notebook is not run here, or ``None``."""
    for key, why in EXCLUDED.items():
        if page == key or (key.endswith("/") and page.startswith(key)):
            return why
    if page in TORCH_PAGES and not with_torch:
        return TORCH_PAGES[page]
    return None


def clean_env(home: Path, venv: Path) -> dict:
    """An environment that knows nothing of the repository: the venv first on PATH, pip's own
    settings kept (its indexes and cache), caches in ``home``."""
    keep = {k: v for k, v in os.environ.items()
            if k.startswith("PIP_") or k in ("HOME", "LANG", "LC_ALL", "TMPDIR", "http_proxy",
                                              "https_proxy", "no_proxy")}
    return {**keep, "PATH": f"{venv / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin",
            "VIRTUAL_ENV": str(venv), "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3",
            "KERAS_HOME": str(home / "keras"), "MPLCONFIGDIR": str(home / "mpl"),
            "PYTHONWARNINGS": "ignore", "TQDM_DISABLE": "1"}


#: what pip needs to build varshift (copied, so that the build leaves nothing in the checkout)
PACKAGE_FILES = ("pyproject.toml", "README.md", "LICENSE", "varshift", "reproduce")


def make_venv(venv: Path, env: dict, extras: str) -> str | None:
    """Create the environment; the reason it could not be made, or ``None``."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    source = venv.parent / "varshift-source"
    for name in PACKAGE_FILES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif path.is_file():
            source.mkdir(exist_ok=True)
            shutil.copy2(path, source / name)
    package = f"{source}[{extras}]" if extras else str(source)
    done = subprocess.run([python, "-m", "pip", "install", "--quiet", package,
                           "ipykernel", "nbclient"], env=env, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
        return f"pip cannot install {package} here ({last[:200]})"
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", type=Path, help="the built HTML folder (docs/_build/html)")
    parser.add_argument("--pages", nargs="*", default=None, help="only these pages (theory ...)")
    parser.add_argument("--with-torch", action="store_true", help="also the PyTorch page")
    parser.add_argument("--extras", default="tensorflow",
                        help="varshift's extras to install (a Keras backend; default tensorflow)")
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep the executed notebooks in this folder")
    args = parser.parse_args(argv)
    site = args.site.resolve()
    pages = [p for p in executed_pages(site) if args.pages is None or p in args.pages]
    for page in pages:
        why = excluded(page, args.with_torch)
        if why and args.pages is None:
            print(f"run-notebooks: {page}: not run ({why})")
    pages = [p for p in pages if args.pages is not None or not excluded(p, args.with_torch)]
    if not pages:
        print("run-notebooks: no notebook to run")
        return 0
    work = Path(tempfile.mkdtemp(prefix="varshift-notebooks-"))
    failed = []
    try:
        venv, home = work / "venv", work / "home"
        home.mkdir()
        env = clean_env(home, venv)
        start = time.perf_counter()
        extras = ",".join(filter(None, [args.extras, "torch" if args.with_torch else ""]))
        why = make_venv(venv, env, extras)
        if why:
            print(f"run-notebooks: skipped: {why}")
            return 0
        print(f"run-notebooks: fresh environment with only varshift installed "
              f"({time.perf_counter() - start:.0f} s)")
        for page in pages:
            folder = work / "run" / page.replace("/", "__")
            folder.mkdir(parents=True)
            path = folder / f"{Path(page).name}.ipynb"
            shutil.copy2(site / "_sources" / f"{page}.ipynb", path)
            start = time.perf_counter()
            done = subprocess.run([str(venv / "bin" / "python"), "-c", RUNNER, str(path),
                                   str(folder), str(CELL_TIMEOUT)], cwd=folder, env=env,
                                  capture_output=True, text=True, check=False)
            took = time.perf_counter() - start
            if done.returncode == 0:
                print(f"run-notebooks: {page}: ok ({took:.0f} s)")
            else:
                detail = (done.stdout.strip() or done.stderr.strip()[-500:]).replace("\n", " ")
                print(f"run-notebooks: {page}: FAILED after {took:.0f} s: {detail}")
                failed.append(page)
            if args.keep is not None:
                args.keep.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, args.keep / f"{page.replace('/', '__')}.ipynb")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"run-notebooks: {len(pages) - len(failed)} of {len(pages)} downloaded notebooks ran "
          "with only varshift installed" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
