"""The work behind ``varshift audit MODEL.keras [--data FILE] [--recalibrate OUT.keras]``.

Kept out of :mod:`varshift.cli` so that the command line stays fast to start: this module
imports TensorFlow. Every user error is raised as :class:`AuditError` with a one-line message;
the click command turns it into ``varshift: error: ...`` and exit code 2.
"""

from __future__ import annotations

import os
import tempfile
import zipfile

import numpy as np

__all__ = ["AuditError", "load_model", "load_data", "run_audit"]


class AuditError(Exception):
    """A problem with the user's files or options: shown as one line, exit code 2."""


def load_model(path):
    """Load a ``.keras`` (or ``.h5``) model without compiling it; one-line error otherwise."""
    import varshift.layers  # noqa: F401  (registers Uout)
    from varshift._keras import keras as load_keras
    from varshift._keras import quiet_stderr

    keras = load_keras()
    if not os.path.isfile(path):
        raise AuditError(f"model file {path!r} does not exist.")
    try:
        with quiet_stderr():
            return keras.models.load_model(path, compile=False)
    except (OSError, ValueError, TypeError, KeyError, AttributeError, zipfile.BadZipFile,
            RuntimeError) as err:
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise AuditError(f"cannot read model file {path!r} as a Keras model ({detail[:200]}).") \
            from None


def load_data(path, key=None):
    """Inputs from a ``.npy`` file, or from a ``.npz`` file's array ``key``.

    Without ``key`` a ``.npz`` file must hold an array named ``x`` or exactly one array.
    """
    if not os.path.isfile(path):
        raise AuditError(f"data file {path!r} does not exist.")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise AuditError(f"cannot read data file {path!r} as .npy/.npz ({err}).") from None
    if isinstance(loaded, np.ndarray):
        if key is not None:
            raise AuditError(f"--key {key!r} applies to .npz files only; {path!r} is a .npy array.")
        return loaded
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
        return loaded[key]


def _table(df, columns):
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 50,
                           "display.float_format", "{:.6g}".format):
        return df[columns].to_string(index=False)


def run_audit(model_path, data_path=None, *, key=None, batch_size=256, recalibrate=None,
              mode="one_pass", echo=print):
    """Print the audit and, with data, the measured shift; optionally save a recalibrated model."""
    from varshift.bnstats import bn_layers as all_bn_layers
    from varshift.bnstats import check_input_shapes
    from varshift.diagnostics import audit, measure_shift, recalibrate_bn

    if recalibrate is not None and data_path is None:
        raise AuditError("--recalibrate needs --data (the statistics are measured on it).")
    if recalibrate is not None and not str(recalibrate).endswith(".keras"):
        raise AuditError(f"--recalibrate must name a .keras file; received {recalibrate!r}.")
    if batch_size < 1:
        raise AuditError(f"--batch-size must be an integer >= 1; received {batch_size}.")
    model = load_model(model_path)
    if not all_bn_layers(model):
        raise AuditError(f"model {model_path!r} has no BatchNormalization layer: "
                         "nothing to audit or recalibrate.")
    x = None
    if data_path is not None:  # read and check the data before printing anything
        x = load_data(data_path, key)
        if x.ndim == 0 or len(x) == 0:
            raise AuditError(f"data file {data_path!r} holds no samples (shape {x.shape}).")
        try:
            check_input_shapes(model, x[:1])
        except ValueError as err:
            raise AuditError(str(err)) from None
    try:
        pairs = audit(model)
    except ValueError as err:
        raise AuditError(str(err)) from None
    echo(f"Model {model.name!r} ({model_path}): {len(all_bn_layers(model))} "
         "BatchNormalization layer(s).")
    echo("")
    echo("Noise layers upstream of BN (case a: direct, b: through one Dense/Conv, "
         "deeper: through more):")
    if len(pairs):
        echo(_table(pairs, ["bn_layer", "noise_layer", "noise_kind", "rate_or_beta", "case", "d",
                            "mean_cos2", "route"]))
    else:
        echo(f"  {pairs.attrs.get('message', 'none')}")
    if x is None:
        return
    echo("")
    echo(f"Measured shift on {data_path} ({len(x)} samples, model in inference mode, exact "
         "one-pass biased variance):")
    try:
        shift = measure_shift(model, x, batch_size=batch_size, progress=True)
    except (ValueError, TypeError) as err:
        raise AuditError(str(err).splitlines()[0]) from None
    echo(_table(shift, ["index", "bn_layer", "moving_mean", "real_mean", "moving_var",
                        "real_var", "ratio"]))
    if recalibrate is None:
        return
    fixed = recalibrate_bn(model, x, mode=mode, batch_size=batch_size, progress=True)
    out_dir = os.path.dirname(os.path.abspath(recalibrate))
    if not os.path.isdir(out_dir):
        raise AuditError(f"folder of --recalibrate {recalibrate!r} does not exist.")
    fd, tmp = tempfile.mkstemp(prefix=".varshift-", suffix=".keras", dir=out_dir)
    os.close(fd)
    try:
        fixed.save(tmp)
        os.replace(tmp, recalibrate)  # atomic: never a half-written model under the name
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    after = measure_shift(fixed, x, batch_size=batch_size)
    echo("")
    echo(f"Recalibrated ({mode}) model written to {recalibrate}; max ratio now "
         f"{after['ratio'].max():.6g} (was {shift['ratio'].max():.6g}).")
