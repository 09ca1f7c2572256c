"""The work behind ``varshift audit MODEL.keras [--data FILE] [--recalibrate OUT.keras]``.

Kept out of :mod:`varshift.cli` so that the command line stays fast to start: the work here
loads Keras and its backend. Every user error is raised as :class:`AuditError` with a one-line
message; the click command turns it into ``varshift: error: ...`` and exit code 2.
"""

from __future__ import annotations

import os
import re
import zipfile

import numpy as np

from varshift._io import atomic_path
from varshift._validate import NUMERIC_KINDS, data_like, output_path

__all__ = ["AuditError", "check_arguments", "recalibrate_target", "load_model", "load_data",
           "run_audit"]


class AuditError(Exception):
    """A problem with the user's files or options: shown as one line, exit code 2."""


NPY_MAGIC, ZIP_MAGIC, HDF5_MAGIC = b"\x93NUMPY", b"PK", b"\x89HDF\r\n\x1a\n"


def _head(path, n=8):
    with open(path, "rb") as fh:
        return fh.read(n)


def _cause(err):
    """The informative part of a Keras loading error, in full, on one line.

    Keras wraps the real cause ("Could not locate class 'MyScale'. Make sure custom classes
    ...") after "Exception encountered:" and before a dump of the whole config.
    """
    text = str(err).strip()
    match = re.search(r"Exception encountered: (.*?)(?:\s*Full object config:|$)", text, re.S)
    text = match.group(1) if match else text.split("\n\n")[0]
    return " ".join(text.split()) or type(err).__name__


def recalibrate_target(path):
    """Where ``--recalibrate PATH`` writes: ``PATH`` itself or, for a symbolic link, the file
    it points to (followed to the end), so the link stays a link and its target is replaced
    atomically; a dangling link is written through to its target the same way."""
    return os.path.realpath(path) if os.path.islink(path) else path


def check_arguments(model_path, data_path=None, *, recalibrate=None, batch_size=256, key=None):
    """Every check that needs no TensorFlow, made before loading anything (instant answers)."""
    if key is not None and data_path is None:
        raise AuditError(f"--key {key!r} names an array of the --data .npz file; give --data "
                         "too (or drop --key).")
    if not os.path.isfile(model_path):
        what = "is a folder" if os.path.isdir(model_path) else "does not exist"
        raise AuditError(f"model file {model_path!r} {what}.")
    if data_path is not None and not os.path.isfile(data_path):
        raise AuditError(f"data file {data_path!r} does not exist.")
    if recalibrate is not None:
        if data_path is None:
            raise AuditError("--recalibrate needs --data (the statistics are measured on it).")
        try:
            output_path(recalibrate, "--recalibrate", suffix=".keras")
            target = recalibrate_target(recalibrate)
            if target != recalibrate:
                output_path(target, f"--recalibrate (link {str(recalibrate)!r} points to)",
                            suffix=".keras")
        except (TypeError, ValueError) as err:
            raise AuditError(str(err)) from None
    if batch_size < 1:
        raise AuditError(f"--batch-size must be an integer >= 1; received {batch_size}.")


def load_model(path):
    """Load a ``.keras`` (or ``.h5``) model without compiling it; one-line error otherwise."""
    if not os.path.isfile(path):
        raise AuditError(f"model file {path!r} does not exist.")
    suffix = os.path.splitext(path)[1].lower()
    kinds = {".keras": (zipfile.is_zipfile, "a zip archive"),
             ".h5": (lambda p: _head(p).startswith(HDF5_MAGIC), "an HDF5 file")}
    if suffix in kinds and not kinds[suffix][0](path):
        raise AuditError(f"cannot read model file {path!r}: it is not a Keras model (a {suffix} "
                         f"model is {kinds[suffix][1]} written by model.save; this file is not).")
    import varshift.layers  # noqa: F401  (registers Uout)
    from varshift._keras import keras as load_keras
    from varshift._keras import quiet_stderr

    keras = load_keras()
    try:
        with quiet_stderr():
            model = keras.models.load_model(path, compile=False)
    except (OSError, ValueError, TypeError, KeyError, AttributeError, zipfile.BadZipFile,
            RuntimeError) as err:
        raise AuditError(f"cannot read model file {path!r} as a Keras model: {_cause(err)}") \
            from None
    if not isinstance(model, keras.Model):
        raise AuditError(f"model file {path!r} holds a {type(model).__name__}, not a Keras model.")
    return model


def load_data(path, key=None):
    """Inputs from a ``.npy`` file, or from a ``.npz`` file's array ``key``.

    Without ``key`` a ``.npz`` file must hold an array named ``x`` or exactly one array. The
    result is a numeric array with at least one sample and no NaN/inf (it is in memory anyway,
    so this costs no pass over the model).
    """
    if not os.path.isfile(path):
        raise AuditError(f"data file {path!r} does not exist.")
    if not _head(path).startswith((NPY_MAGIC, ZIP_MAGIC)):
        raise AuditError(f"data file {path!r} is not a .npy/.npz file (it does not start with "
                         "numpy's header); write it with numpy.save or numpy.savez.")
    _check_sizes(path)
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as err:
        if "pickled" in str(err):
            raise AuditError(f"data file {path!r} holds Python objects (dtype object), not "
                             "numbers.") from None
        raise AuditError(f"cannot read data file {path!r} as .npy/.npz ({_cause(err)}).") from None
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        raise AuditError(f"cannot read data file {path!r} as .npy/.npz ({_cause(err)}).") from None
    if isinstance(loaded, np.ndarray):
        if key is not None:
            raise AuditError(f"--key {key!r} applies to .npz files only; {path!r} is a .npy array.")
        return _checked(loaded, path)
    with loaded:
        names = list(loaded.files)
        if key is None:
            if "x" in names:
                key = "x"
            elif len(names) == 1:
                key = names[0]
            else:
                raise AuditError(f"data file {path!r} holds arrays {names}; choose one with --key.")
        if key not in names:
            raise AuditError(f"data file {path!r} has no array {key!r}; it holds {names}.")
        try:
            return _checked(loaded[key], path)
        except ValueError as err:  # an object array inside the .npz
            raise AuditError(f"cannot read array {key!r} of {path!r}: {_cause(err)}") from None


def _declared_bytes(fh, where):
    """Bytes of data a ``.npy`` header declares (read from ``fh``), for ``where``."""
    from numpy.lib import format as npy  # noqa: PLC0415

    try:
        version = npy.read_magic(fh)
        shape, _, dtype = (npy.read_array_header_1_0(fh) if version == (1, 0)
                           else npy.read_array_header_2_0(fh))
    except (ValueError, OSError, EOFError) as err:
        raise AuditError(f"cannot read {where} as .npy ({_cause(err)}).") from None
    if dtype.hasobject:
        raise AuditError(f"{where} holds Python objects (dtype object), not numbers.")
    return int(np.prod(shape, dtype=object)) * dtype.itemsize, shape


def _check_sizes(path):
    """Compare every ``.npy`` header with the bytes that follow it, before numpy allocates
    what the header claims (a header can claim 9,999,999,999 rows in a 200-byte file); a zip
    that is not a ``.npz`` (a ``.keras`` model, other members) is refused here too."""
    if _head(path).startswith(NPY_MAGIC):
        with open(path, "rb") as fh:
            need, shape = _declared_bytes(fh, f"data file {path!r}")
            have = os.path.getsize(path) - fh.tell()
        if need != have:
            raise AuditError(f"data file {path!r} is damaged: its header declares an array of "
                             f"shape {shape} ({need} bytes) but {have} bytes follow it.")
        return
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            others = [m.filename for m in members if not m.filename.endswith(".npy")]
            if others or not members:
                what = " (a .keras model?)" if "config.json" in others else ""
                raise AuditError(f"data file {path!r} is a zip archive but not a .npz of "
                                 f"arrays{what}: member(s) {others[:3]} are not .npy arrays.")
            for member in members:
                with archive.open(member) as fh:
                    where = f"array {member.filename[:-4]!r} of {path!r}"
                    need, shape = _declared_bytes(fh, where)
                    have = member.file_size - fh.tell()
                if need != have:
                    raise AuditError(f"{where} is damaged: its header declares shape {shape} "
                                     f"({need} bytes) but {have} bytes follow it.")
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise AuditError(f"cannot read data file {path!r} as .npz ({_cause(err)}).") from None


def _checked(x, path):
    if x.dtype.kind not in NUMERIC_KINDS:
        raise AuditError(f"data file {path!r} holds values of dtype {x.dtype} (shape {x.shape}); "
                         "expected numbers (bool, int or float).")
    if x.ndim == 0 or len(x) == 0:
        raise AuditError(f"data file {path!r} holds no samples (shape {x.shape}).")
    if x.dtype.kind == "f":
        bad = ~np.isfinite(x)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise AuditError(f"data file {path!r} holds {int(bad.sum())} NaN/inf value(s) of "
                             f"{x.size} (first at index {first}: {x[first].item()}).")
    return x


def _table(df, columns):
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 50,
                           "display.float_format", "{:.6g}".format):
        return df[columns].to_string(index=False)


def run_audit(model_path, data_path=None, *, key=None, batch_size=256, recalibrate=None,
              mode="one_pass", echo=print):
    """Print the audit and, with data, the measured shift; optionally save a recalibrated model.

    Every argument is checked before Keras is imported, and the data before anything is
    printed; the recalibrated model is written atomically, only when everything succeeded.
    """
    check_arguments(model_path, data_path, recalibrate=recalibrate, batch_size=batch_size,
                    key=key)
    x = load_data(data_path, key) if data_path is not None else None
    model = load_model(model_path)
    from varshift._graph import bn_layers as all_bn_layers
    from varshift.diagnostics import audit, measure_shift, recalibrate_bn

    try:
        if x is not None:
            data_like(x, model, "--data")
        pairs = audit(model)
    except (TypeError, ValueError) as err:
        raise AuditError(_cause(err)) from None
    echo(f"Model {model.name!r} ({model_path}): {len(all_bn_layers(model))} "
         "BatchNormalization layer(s).")
    echo("")
    echo("Noise layers upstream of BN (case a: direct, b: through one Dense/Conv, "
         "deeper: through more):")
    if len(pairs):
        echo(_table(pairs, ["bn_layer", "noise_layer", "noise_kind", "param", "param_value",
                            "case", "d", "mean_cos2", "route"]))
    else:
        echo(f"  {pairs.attrs.get('message', 'none')}")
    if x is None:
        return
    echo("")
    echo(f"Measured shift on {data_path} ({len(x)} samples, model in inference mode, exact "
         "one-pass biased variance):")
    shift = measure_shift(model, x, batch_size=batch_size, progress=True)
    echo(_table(shift, ["index", "bn_layer", "moving_mean", "real_mean", "moving_var",
                        "real_var", "ratio"]))
    if recalibrate is None:
        return
    import warnings  # noqa: PLC0415

    from varshift.diagnostics.recalibrate import ConstantInputWarning  # noqa: PLC0415

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConstantInputWarning)
        fixed = recalibrate_bn(model, x, mode=mode, batch_size=batch_size, progress=True)
    for warning in caught:
        if issubclass(warning.category, ConstantInputWarning):
            echo(f"warning: {warning.message}")
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                   warning.lineno)
    try:  # never a half-written model under the name; a symbolic link stays one
        with atomic_path(recalibrate_target(recalibrate)) as tmp:
            fixed.save(tmp)
    except OSError as err:
        raise AuditError(f"cannot write --recalibrate {recalibrate!r}: "
                         f"{err.strerror or _cause(err)}") from None
    after = measure_shift(fixed, x, batch_size=batch_size)
    echo("")
    echo(f"Recalibrated ({mode}) model written to {recalibrate}; max ratio now "
         f"{_max_ratio(after)} (was {_max_ratio(shift)}).")


def _max_ratio(df):
    """The largest shift ratio, without NaN: a layer whose input is constant on the data
    (variance 0) has no ratio, and is counted instead."""
    ratios = df["ratio"].dropna()
    undefined = len(df) - len(ratios)
    if not len(ratios):
        return "undefined (every BN layer's input is constant on --data)"
    note = f"; {undefined} layer(s) with constant input have no ratio" if undefined else ""
    return f"{ratios.max():.6g}{note}"
