"""The ``varshift`` command line (also ``python -m varshift``).

Built on click. Keras and its backend are imported only by the sub-commands that need them, so
``varshift --help`` and ``varshift theory`` answer instantly.
"""

from __future__ import annotations

import functools
import sys

import click

from varshift import __version__, theory
from varshift._validate import MAX_SEED
from varshift.contracts import (
    BETA_SCALAR,
    COUNT,
    RATE_SCALAR,
    VARIANCE,
    Boolean,
    InputPath,
    Instance,
    Integer,
    Optional,
    Options,
    OutputPath,
    Real,
    contract,
)

__all__ = ["main", "cli"]

#: the package each Keras backend imports (Keras' numpy backend is built on JAX)
_BACKEND_PACKAGES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch", "numpy": "jax"}


def _fail(message: str):
    """Print one clear line and exit with code 2 (bad usage or input), no traceback."""
    click.echo(f"varshift: error: {message}", err=True)
    sys.exit(2)


class _OneLineErrors(click.Group):
    """Click's usage errors (bad option value, unknown command) as one line, exit code 2."""

    def main(self, *args, **kwargs):
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except click.exceptions.NoArgsIsHelpError as err:  # bare `varshift`: the help
            click.echo(err.ctx.get_help(), err=True)
            sys.exit(2)
        except click.ClickException as err:
            hint = f" (see 'varshift {err.ctx.command.name} --help')" \
                if getattr(err, "ctx", None) is not None and err.ctx.parent is not None else ""
            _fail(" ".join(err.format_message().split()) + hint)
        except click.exceptions.Abort:
            click.echo("varshift: interrupted", err=True)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


class _Once(click.Command):
    """A command whose options may be given once each: ``--rate 0.2 --rate 0.5`` is refused
    (click would keep the last one silently)."""

    def parse_args(self, ctx, args):
        seen = {}
        for token in args:
            if token == "--":
                break
            opt = token.split("=", 1)[0]
            for param in self.params:
                if isinstance(param, click.Option) and not param.multiple and \
                        not param.count and opt in (*param.opts, *param.secondary_opts):
                    seen.setdefault(param.name, []).append(opt)
        for given in seen.values():
            if len(given) > 1:
                raise click.UsageError(f"option {given[0]} given {len(given)} times; give it "
                                       "once.", ctx=ctx)
        return super().parse_args(ctx, args)


def _declared(**params):
    """The command's arguments declared once (:func:`varshift.contracts.contract`), checked
    before its body runs; a violation is one line and exit 2."""

    def decorate(fn):
        declared = contract(cli=params.pop("_labels", True), **params)(fn).__contract__

        @functools.wraps(fn)
        def run(**kwargs):
            try:
                declared.check(dict(kwargs))
            except (TypeError, ValueError) as err:
                _fail(" ".join(str(err).split()))
            return fn(**kwargs)

        return run

    return decorate


def _check_backend():
    """The Keras backend chosen by ``KERAS_BACKEND`` exists and its package is installed."""
    import importlib.util  # noqa: PLC0415
    import os  # noqa: PLC0415

    name = os.environ.get("KERAS_BACKEND")
    if not name or "keras" in sys.modules:
        return
    if name not in _BACKEND_PACKAGES:
        _fail(f"KERAS_BACKEND={name} is not a Keras backend; expected one of "
              f"{', '.join(_BACKEND_PACKAGES)}.")
    package = _BACKEND_PACKAGES[name]
    if importlib.util.find_spec(package) is None:
        _fail(f"KERAS_BACKEND={name} needs the {package} package, which is not installed here; "
              "install it or choose another backend.")


@click.group(cls=_OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="varshift")
def cli():
    """The dropout / batch-normalization variance shift (Li et al., CVPR 2019)."""


def _row(label, var_train, var_test, ratio):
    """One case: the ratio comes from the shift functions' own stable forms (a training
    variance beyond float64 prints as inf, its ratio as 0, never NaN)."""
    return (f"  {label:<34} {float(var_train):>12.6g} {float(var_test):>12.6g} "
            f"{float(ratio):>10.6f}")


@cli.command("theory", cls=_Once)
@click.option("--rate", type=float, default=None,
              help="Keras drop ratio of Dropout / GaussianDropout, in [0, 1).")
@click.option("--mean", "mean", type=float, default=0.0, show_default=True,
              help="Mean c of the unit entering the noise layer.")
@click.option("--var", "var", type=float, default=1.0, show_default=True,
              help="Variance v of that unit.")
@click.option("--rho", type=float, default=None,
              help="Common correlation of the d inputs (case b, with --d-cos2).")
@click.option("--d-cos2", "d_cos2", type=float, default=None,
              help="d cos^2(theta) of the linear layer's weights (case b, with --rho).")
@click.option("--beta", type=float, default=None, help="Uout's noise half-width, in [0, 1].")
@_declared(rate=Optional(RATE_SCALAR), mean=Real(), var=VARIANCE,
           rho=Optional(Real(-1.0, 1.0, meaning="a correlation")),
           d_cos2=Optional(Real(0.0, None)), beta=Optional(BETA_SCALAR))
def theory_command(rate, mean, var, rho, d_cos2, beta):
    """Print train/test variance and the shift ratio Var_test / Var_train.

    --rate gives case (a) (Dropout -> BN, Eq. 7-8) and Keras' GaussianDropout at the same
    rate; --rho with --d-cos2 adds case (b) (Dropout -> linear -> BN, Eq. 14); --beta adds
    Uout (Eq. 15).
    """
    if rate is None and beta is None:
        _fail("give --rate (dropout) and/or --beta (Uout); see 'varshift theory --help'.")
    if (rho is None) != (d_cos2 is None):
        _fail("case (b) needs both --rho and --d-cos2; received only "
              f"{'--rho' if rho is not None else '--d-cos2'}.")
    lines = [f"unit: mean c = {mean:g}, variance v = {var:g}",
             f"  {'case':<34} {'Var_train':>12} {'Var_test':>12} {'ratio':>10}"]
    try:
        if rate is not None:
            lines.append(_row(f"(a) Dropout(rate={rate:g}) -> BN",
                              theory.dropout_train_variance(mean, var, rate), var,
                              theory.shift_ratio(mean, var, rate)))
            lines.append(_row(f"GaussianDropout(rate={rate:g}) -> BN",
                              theory.gaussian_dropout_train_variance(mean, var, rate), var,
                              theory.gaussian_dropout_shift_ratio(mean, var, rate)))
            if rho is not None:
                ratio = float(theory.shift_ratio_linear(mean, var, rate, rho, d_cos2))
                lines.append(f"  {'(b) Dropout -> linear -> BN':<34} {'':>12} {'':>12} {ratio:>10.6f}"
                             f"   (rho={rho:g}, d cos^2={d_cos2:g}; Eq. 14)")
        elif rho is not None:
            _fail("case (b) needs --rate as well.")
        if beta is not None:
            lines.append(_row(f"Uout(beta={beta:g}) -> BN",
                              theory.uout_train_variance(mean, var, beta), var,
                              theory.uout_shift_ratio(mean, var, beta)))
    except (TypeError, ValueError) as err:
        _fail(str(err))
    click.echo("\n".join(lines))


@cli.command("demo", cls=_Once)
@click.option("--rate", type=float, default=0.2, show_default=True, help="Drop ratio.")
@click.option("--epochs", type=int, default=15, show_default=True, help="Training epochs.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as JSON.")
@_declared(rate=RATE_SCALAR, epochs=COUNT, seed=Integer(0, MAX_SEED), as_json=Boolean(),
           _labels={"as_json": "--json"})
def demo_command(rate, epochs, seed, as_json):
    """The seed notebook's experiment: Dropout(0.2) -> BN on N(5, 2^2), measured and restored."""
    import json  # noqa: PLC0415

    from tqdm.auto import tqdm  # noqa: PLC0415

    _check_backend()
    from varshift.demo import run_demo  # noqa: PLC0415  (imports Keras and its backend)

    with tqdm(total=3 * epochs, desc="training (BN-only, Dropout->BN, Dropout->Dense)", unit="epoch",
              file=sys.stderr, disable=as_json or None) as bar:
        result = run_demo(rate, epochs=epochs, seed=seed,
                          progress=lambda done, total: bar.update(done - bar.n))
    r = result
    if as_json:
        click.echo(json.dumps(r.as_dict(), indent=2))
        return
    closed, learned = r.data_mean + r.eq8_shift * (1 - r.data_mean), r.gamma / r.data_var ** 0.5
    click.echo(f"""
Data: {r.n_samples} x {r.n_features} samples of N(5, 2^2) (seed {r.seed}); mean {r.data_mean:.3f},
variance {r.data_var:.3f}. Model: Input -> Dropout(rate={r.rate:g}) -> BatchNormalization, trained
{r.epochs} epochs (batch {r.batch_size}) to reproduce its input. Values are means over features.

1. What BN stored during training (dropout on)
   Eq. 7 training variance (c^2+v)/p - c^2            {r.eq7_train_var:9.4f}
   expected Keras value ((m-1)/m, biased batch var)    {r.keras_expected_var:9.4f}
   stored moving_variance                              {r.stored_moving_var:9.4f}
2. What BN sees at inference (dropout off)
   variance of BN's input                              {r.inference_input_var:9.4f}
   shift Var_test / Var_train: Eq. 8 {r.eq8_shift:.4f}, measured {r.measured_shift:.4f}
3. Prediction for an input of ones (ideal: 1)
   BN-only control                                     {r.pred_ones_bn_only:9.4f}
   Dropout -> BN                                       {r.pred_ones_dropout_bn:9.4f}
   after restoring the variance (inverse of Eq. 7)     {r.pred_ones_restored:9.4f}
   no-BN control: Dropout -> Dense(1), same task       {r.pred_ones_no_bn:9.4f}
   closed form c + Delta (x - c), Delta = Eq. 8        {closed:9.4f}
   inference-mode MSE on the data: control {r.mse_bn_only:.4f}, dropout {r.mse_dropout_bn:.4f},
   restored {r.mse_restored:.4f}, no-BN control {r.mse_no_bn:.4f}
4. What the Dropout -> BN answer is made of. Trained with dropout, the best affine map of the
   dropped input is c + Delta (x - c), with or without BN: the no-BN control answers the same, so
   in this toy the distance from 1 is dropout's own shrinkage. The BN model splits Delta into
   gamma / sqrt(v) = {learned:.3f} (learned; gamma {r.gamma:.3f}, beta {r.beta:.3f}) times
   sqrt(v / V) = {r.measured_shift ** 0.5:.3f} (the variance shift). The restore removes only the latter.
5. The restore gives variance {r.restored_var:.3f} against the data's {r.data_var:.3f}: it ignores
   that Keras stored (m-1)/m of V. Undoing (m-1)/m first gives {r.restored_var_unbiased:.3f}
   (p V / (m-1) more).""")


@cli.command("audit", cls=_Once)
@click.argument("model_path", metavar="MODEL.keras", type=click.Path(dir_okay=False))
@click.option("--data", "data_path", type=click.Path(dir_okay=False), default=None,
              help="Inputs (.npy, or .npz with --key) to measure the shift on.")
@click.option("--key", default=None, help="Array name inside the .npz file (default: x).")
@click.option("--batch-size", type=int, default=256, show_default=True,
              help="Batch size of the measuring passes.")
@click.option("--recalibrate", "recalibrate", type=click.Path(dir_okay=False), default=None,
              metavar="OUT.keras", help="Re-estimate BN statistics on --data and save here "
                                        "(a symbolic link: its target is replaced).")
@click.option("--mode", type=click.Choice(["one_pass", "sequential"]), default=None,
              help="With --recalibrate: one pass (BN on batch statistics, noise off; the "
                   "default) or sequential (inference mode, exact, one pass per BN layer).")
@_declared(model_path=InputPath("file", what="Keras model file"),
           data_path=Optional(InputPath("file", what="data file (.npy or .npz)")),
           key=Optional(Instance(str, what="an array name")), batch_size=COUNT,
           recalibrate=Optional(OutputPath(".keras")),
           mode=Optional(Options("one_pass", "sequential")),
           _labels={"model_path": "MODEL.keras", "data_path": "--data"})
def audit_command(model_path, data_path, key, batch_size, recalibrate, mode):
    """Audit a saved Keras model: noise layers feeding BN and, with --data, the measured shift.

    With --recalibrate, also write a copy whose BN moving statistics were re-estimated on the
    data in inference mode (the paper's "Adjust BN").
    """
    if mode is not None and recalibrate is None:
        _fail(f"--mode {mode} applies to --recalibrate, which is not given; give "
              "--recalibrate OUT.keras (or drop --mode).")
    from varshift.diagnostics._cli import AuditError, check_arguments  # noqa: PLC0415

    try:  # the checks that need no Keras, before any backend is imported
        check_arguments(model_path, data_path, recalibrate=recalibrate, batch_size=batch_size,
                        key=key)
    except AuditError as err:
        _fail(str(err))
    _check_backend()
    from varshift.diagnostics._cli import run_audit  # noqa: PLC0415 (TF lazily)

    try:
        run_audit(model_path, data_path, key=key, batch_size=batch_size,
                  recalibrate=recalibrate, mode=mode or "one_pass", echo=click.echo)
    except AuditError as err:
        _fail(str(err))
    except (ValueError, TypeError, OSError) as err:  # e.g. NaN found while the data streams
        _fail(" ".join(str(err).split()) or type(err).__name__)


def main(argv=None):
    """Entry point of the ``varshift`` console script."""
    cli.main(args=argv, prog_name="varshift")


if __name__ == "__main__":  # pragma: no cover
    main()
