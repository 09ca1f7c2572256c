"""What a run costs, and so what a plan costs: one model per kind of machine, in one module.

- **CPU** (measured): :data:`RUN_COST`, the wall-seconds of each phase of a run on a 2-core
  machine, scaled to other sizes by :func:`size_factor`; :func:`run_seconds` of one run,
  :func:`cpu_plan_minutes` of a plan, :func:`relative_cost` (the plan's order: cheap networks
  first).
- **GPU** (an ESTIMATE): :data:`H200`, a model of one NVIDIA H200 fed with what
  :func:`network_facts` counts in the built network; :func:`gpu_run_seconds` of one run,
  :func:`gpu_plan_minutes` of a plan.
- **Per-epoch table** ``reproduce/data/throughput.csv``: seconds per epoch of the paper's sizes
  on a V100-class GPU, estimates judged by hand (its ``basis`` column says how), for the
  sizes no model here covers; the rows of the ``gpu`` profile's sizes come from :data:`H200`
  (:func:`gpu_throughput_row`). The GPU-hour figure of a plan is

.. math:: \\text{GPU-hours} = \\frac{1}{3600} \\sum_{\\text{runs}} \\text{epochs}(r)\\,
          s_{\\text{epoch}}(\\text{net}(r))

over the training epochs only (the final shift measurement and BN adjustment of a run add a
few epochs' worth of inference) and is an estimate whenever one of its rows is.
:mod:`reproduce.budget` puts these figures into the profiles' budget notes.
"""

from __future__ import annotations

import csv
import functools
from collections import defaultdict
from pathlib import Path

__all__ = ["RUN_COST", "run_seconds", "cpu_plan_minutes", "size_factor", "relative_cost",
           "throughput_table", "throughput_row", "plan_cost", "H200", "network_facts",
           "count_network", "gpu_epoch_seconds", "gpu_run_seconds", "gpu_plan_minutes",
           "gpu_throughput_row"]


# --------------------------------------------------------------------------- the CPU model
#: Cost of one training run: **wall-seconds while two single-threaded runs share a 2-core
#: machine** (quick's ``jobs=2``), Fashion-MNIST 28x28, batch 32, the small networks. Fitted to
#: the CPU-seconds of each phase of a quick run measured alone (``time.process_time``; PreResNet
#: and WRN dropout-(a) 0.5 with per-epoch evaluation and Adjust BN, PreResNet's with Fig. 6),
#: times 1.15 for two runs side by side (each holds a core of its own: with tf.data's autotuning
#: off the training passes do not idle, and two runs use about the CPU per epoch of one). CPU
#: seconds rather than wall because the CPU they were measured on was shared with other work. Per network:
#:
#: - ``train``: s per 1,000 training images per epoch (history ``seconds``; the first epoch's
#:   graph tracing included): preresnet 41.0 CPU-s, wrn 22.8 for 16,000;
#: - ``overhead``: the rest of a run without per-epoch evaluation or hooks beyond ``cos2``
#:   (data, model, the final test evaluation of 1,000 test images, the shift measurement, the
#:   training error in inference mode, the worker's start-up spread over its runs);
#: - ``test``: s per 1,000 further test images (one ``evaluate`` at batch 256: preresnet 0.50,
#:   wrn 0.31 CPU-s);
#: - ``epoch_eval``: s per 1,000 images of the per-epoch evaluation passes (inference and
#:   compiled training mode: preresnet 3.6, wrn 2.3 CPU-s over 4,000);
#: - ``adjust``: the ``adjust_bn`` hook (Table 3's three re-estimations of BN, sequential as one
#:   batch, one_pass and one_pass with the noise at batch 256, on the run's work copy, and
#:   three test evaluations of 4,000 images) at 500 images read (preresnet 11.9, wrn 6.6 CPU-s
#:   at 1,024), less ``adjust_per_1000``'s share;
#: - ``adjust_per_1000``: s per 1,000 further images the re-estimations read (three passes);
#: - ``fig6``: the ``fig6`` hook (a sequential re-estimation of BN on one batch of 512 images
#:   and four forward passes of them): preresnet 3.6 CPU-s.
#:
#: DenseNet-BC and ResNeXt (not in quick) are scaled from PreResNet by their earlier measured
#: ratios (DenseNet-BC about 0.8x PreResNet's training, ResNeXt's grouped convolutions about
#: 2x). The schedule (step or cosine) does not change the cost.
RUN_COST = {
    "wrn": {"train": 1.65, "overhead": 2.8, "epoch_eval": 0.65, "test": 0.35, "adjust": 6.4,
            "adjust_per_1000": 2.2, "fig6": 2.2},
    "preresnet": {"train": 2.95, "overhead": 3.9, "epoch_eval": 1.05, "test": 0.6,
                  "adjust": 11.6, "adjust_per_1000": 4.0, "fig6": 4.1},
    "densenet_bc": {"train": 2.4, "overhead": 4.9, "epoch_eval": 1.3, "test": 0.6,
                    "adjust": 11.6, "adjust_per_1000": 4.0, "fig6": 4.1},
    "resnext29": {"train": 5.9, "overhead": 7.8, "epoch_eval": 2.1, "test": 1.2,
                  "adjust": 23.2, "adjust_per_1000": 8.0, "fig6": 8.2},
}

def size_factor(net, size):
    """Cost per image of ``net`` built with the size keywords ``size`` over its cost at
    ``varshift.nets.SMALL_SIZES[net]`` (the size :data:`RUN_COST` was measured at): the ratio
    of the CPU-seconds per training image-pass that ``reproduce.regime_selection`` measured for
    the two sizes (batch 32), 1 for a size it did not measure."""
    from reproduce.regime_selection import SIZES

    named = {tuple(sorted(kw.items())): name for name, kw in SIZES.get(net, {}).items()}
    name = named.get(tuple(sorted(dict(size).items())))
    return 1.0 if name in (None, "small") else _measured_size_ratio(net, name)


@functools.cache
def _measured_size_ratio(net, name):
    """:func:`size_factor` of a size ``reproduce.regime_selection`` measured, its CSV read once."""
    from reproduce.regime_selection import CSV_PATH, cpu_per_pass, read_rows

    rows = read_rows(CSV_PATH)
    return cpu_per_pass(rows, net, name, 32) / cpu_per_pass(rows, net, "small", 32)


def run_seconds(config):
    """Estimated wall-seconds of one run of the plan, two runs sharing the machine
    (see :data:`RUN_COST`; per-image costs scaled by :func:`size_factor`)."""
    factor = size_factor(config["net"], config["size"])
    cost = {k: v * (factor if k != "overhead" else 1.0)
            for k, v in RUN_COST[config["net"]].items()}
    epochs = config["overrides"]["epochs"]
    n_train = (config.get("subset") or {}).get("n_train", 60000)
    n_test = (config.get("subset") or {}).get("n_test", 10000)
    seconds = (cost["overhead"] + cost["train"] * n_train * epochs / 1000.0
               + cost["test"] * max(0, n_test - 1000) / 1000.0)
    if config.get("epoch_eval"):  # inference and training mode, every epoch
        seconds += cost["epoch_eval"] * 2 * epochs * (config.get("train_eval_samples") or n_train) / 1000.0
    hooks = config.get("evaluations")
    if hooks is None:  # the fields layout of the pilot's records (plan.fields_layout)
        hooks = {**({"adjust_bn": {"samples": config.get("adjust_samples")}}
                    if config.get("adjust") else {}),
                 **({"fig6": {}} if config.get("fig6") else {})}
    if "adjust_bn" in hooks:
        n_adjust = hooks["adjust_bn"].get("samples") or config.get("stats_samples") or n_train
        seconds += cost["adjust"] + cost["adjust_per_1000"] * (min(n_adjust, n_train) - 500) / 1000.0
    if "fig6" in hooks:
        seconds += cost["fig6"]
    return seconds


def cpu_plan_minutes(specs, jobs, fixed_s=0.0):
    """Estimated wall minutes of ``specs`` on a 2-core machine with ``jobs`` single-threaded
    processes (:data:`RUN_COST` is measured at 2), plus ``fixed_s`` seconds outside the runs."""
    seconds = sum(run_seconds(s.config) for s in specs)
    return (seconds / max(1, int(jobs)) + fixed_s) / 60.0


def relative_cost(net):
    """CPU cost of training ``net`` per image over WRN's (:data:`RUN_COST`): the plan trains
    cheap networks first. A network without measured costs comes last (``inf``)."""
    if net not in RUN_COST:
        return float("inf")
    return RUN_COST[net]["train"] / RUN_COST["wrn"]["train"]


# ---------------------------------------------------------------------- the per-epoch table
TABLE = Path(__file__).parent / "data" / "throughput.csv"
#: the profiles' size names whose per-epoch seconds the :data:`H200` model gives
MODELLED_SIZES = ("gpu",)


def throughput_table(path=TABLE):
    """``{(net, size): row}`` of the hand-judged rows of ``throughput.csv``
    (``seconds_per_epoch`` as a float); the modelled sizes are :func:`throughput_row`'s."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {(r["net"], r["size"]): {**r, "seconds_per_epoch": float(r["seconds_per_epoch"])}
            for r in rows}


def _recipe(config):
    from varshift import train

    # the fields layout's end-of-run flags (the pilot's records) do not change the recipe
    skip = {"subset", "adjust", "adjust_samples", "fig6"}
    trainer = {k: v for k, v in config.items() if k not in skip}
    return train.RunConfig.from_any(trainer).resolved()[1]


def _epochs(config):
    return _recipe(config).epochs


def _size_name(net, size):
    """``"paper"`` (the builder's defaults), a profile's name whose per-network sizes hold
    ``size`` (``"gpu"``), else ``"small"``."""
    if size == {}:
        return "paper"
    from reproduce.profiles import PROFILES

    for profile in PROFILES.values():
        if isinstance(profile.size, dict) and profile.size.get(net) == size:
            return profile.name
    return "small"


def _size_keywords(net, size):
    """The builder's size keywords of ``size``: keywords as they are, or a size name
    (``"paper"``: the builder's defaults; ``"small"``; a profile with per-network sizes)."""
    if isinstance(size, dict):
        return dict(size)
    if size == "paper":
        return {}
    if size == "small":
        from varshift.nets import SMALL_SIZES

        return dict(SMALL_SIZES[net])
    from reproduce.profiles import get_profile

    return dict(get_profile(size).size[net])


def throughput_row(config, table):
    """The per-epoch row of one run: ``table``'s for its network and size name, else the
    :data:`H200` model's for a size of :data:`MODELLED_SIZES`, else ``None``."""
    net, name = config["net"], _size_name(config["net"], config["size"])
    row = table.get((net, name))
    if row is None and name in MODELLED_SIZES:
        row = gpu_throughput_row(net, config["size"], _recipe(config).batch_size, name)
    return row


def plan_cost(specs, table=None):
    """Per (network, data set): runs, epochs and GPU-hours (``None`` without a per-epoch row,
    :func:`throughput_row`)."""
    table = throughput_table() if table is None else table
    groups = defaultdict(lambda: {"runs": 0, "epochs": 0, "gpu_hours": 0.0, "row": None})
    for spec in specs:
        c = spec.config
        g = groups[(c["net"], c["data"])]
        epochs = _epochs(c)
        g["runs"] += 1
        g["epochs"] += epochs
        row = throughput_row(c, table)
        if row is None:
            g["gpu_hours"] = None
        elif g["gpu_hours"] is not None:
            g["row"] = row
            g["gpu_hours"] += epochs * row["seconds_per_epoch"] / 3600.0
    return dict(groups)


# ------------------------------------------------------------------------ the H200 cost model
#: What the ``gpu`` profile's plan assumes of one NVIDIA H200 shared by several worker
#: processes. These are ESTIMATES: no varshift run was timed on an H200 to fit them. Per
#: training image, ``6 x MACs / flops`` (forward, backward-data, backward-weights) plus
#: ``activations x bytes_per_activation / bandwidth`` (the BN/ReLU/dropout passes over every
#: conv output, forward and backward, which are memory-bound on thin networks); per SGD step
#: ``conv layers x kernel_s`` (about 8 small kernels per conv+BN unit at ~4 us each, which
#: several processes cannot overlap); an inference image costs ``forward_share`` of a training
#: image. ``flops``: effective TF32 rate of XLA's convolutions at 28x28 with 16-256 channels
#: (about a tenth of the datasheet's dense TF32 rate); ``bandwidth``: 70% of the 4.3 TB/s
#: copy rate measured on an H200; ``fixed_s``: per-run start-up, model build
#: and XLA compilation of the train, evaluation and BN-statistics functions, on the host's CPU
#: cores (overlapped with the other workers' GPU time; XLA:CPU compiled the first training step
#: of WRN-16-2 in about 12 CPU-s and of PreResNet-38 in about 15 CPU-s on a 2-core x86-64 CPU;
#: seeds 1-4 of a setting can reuse seed 0's programs through run.sh's JAX compilation cache).
H200 = {"device": "NVIDIA H200", "flops": 50e12, "bandwidth": 3.0e12,
        "bytes_per_activation": 48, "kernel_s": 32e-6, "forward_share": 1 / 3,
        "fixed_s": 30.0}



@functools.cache
def _facts(net, size_items):
    return count_network(net, dict(size_items))


def network_facts(net, size):
    """``(MACs, conv outputs, conv layers)`` per 28x28x1 image of ``net`` at ``size`` (keywords
    or a size name, :func:`count_network`; counted once per process)."""
    return _facts(net, tuple(sorted(_size_keywords(net, size).items())))


def _all_layers(layer):
    for sub in getattr(layer, "layers", None) or []:
        yield sub
        yield from _all_layers(sub)


def count_network(net, size_keywords, input_shape=(28, 28, 1)):
    """``(MACs, conv outputs, conv layers)`` per image of ``net`` built with ``size_keywords``
    (counted, not estimated: multiply-accumulates of the conv and dense layers, conv output
    elements, conv layers)."""
    from varshift import nets

    model = nets.build(net, 10, input_shape=input_shape, **size_keywords)
    macs = acts = layers = 0
    for layer in _all_layers(model):
        kind = type(layer).__name__
        if kind == "Conv2D":
            _, h, w, c = layer.output.shape
            kh, kw, cin, _ = layer.kernel.shape
            macs += h * w * c * kh * kw * cin
            acts += h * w * c
            layers += 1
        elif kind == "Dense":
            macs += layer.kernel.shape[0] * layer.kernel.shape[1]
    return macs, acts, layers


def gpu_epoch_seconds(net, size, n_images, batch_size, *, training=True, model=H200):
    """Estimated H200 seconds of one pass over ``n_images`` of ``net`` at ``size`` (keywords
    or a size name; :data:`H200`, an ESTIMATE)."""
    macs, acts, layers = network_facts(net, size)
    steps = -(-int(n_images) // int(batch_size))
    image = 6.0 * macs / model["flops"] + acts * model["bytes_per_activation"] / model["bandwidth"]
    step = layers * model["kernel_s"]
    if not training:
        image, step = image * model["forward_share"], step * model["forward_share"]
    return n_images * image + steps * step


def gpu_run_seconds(config, model=H200):
    """``(gpu_s, fixed_s)``: estimated GPU-busy seconds of one run of a plan and its host-side
    fixed cost, from :data:`H200` (training epochs, per-epoch evaluation, the final test
    evaluation and shift measurement, and Table 3's three BN re-estimations with their test
    evaluations)."""
    net, size = config["net"], config["size"]
    recipe = _recipe(config)
    n_train = (config.get("subset") or {}).get("n_train", 60000)
    n_test = (config.get("subset") or {}).get("n_test", 10000)
    stats = config.get("stats_samples") or n_train
    evals = config.get("train_eval_samples") or n_train

    def forward(n):
        return gpu_epoch_seconds(net, size, n, 500, training=False, model=model)

    gpu = recipe.epochs * gpu_epoch_seconds(net, size, n_train, recipe.batch_size, model=model)
    if config.get("epoch_eval"):  # inference and training mode, every epoch
        gpu += recipe.epochs * 2 * forward(evals)
    gpu += forward(n_test) + 2 * forward(stats)
    if "adjust_bn" in (config.get("evaluations") or {}):  # sequential: a pass per BN layer
        bn_layers = network_facts(net, size)[2]
        gpu += (bn_layers + 2) * forward(stats) + 3 * forward(n_test)
    return gpu, model["fixed_s"]


def gpu_plan_minutes(specs, jobs, model=H200):
    """Estimated wall minutes of ``specs`` on one H200 with ``jobs`` worker processes: the
    larger of the GPU's busy time (one GPU serves every worker) and the workers' own time
    (GPU share plus fixed cost, spread over ``jobs``). An ESTIMATE (:data:`H200`)."""
    costs = [gpu_run_seconds(s.config, model) for s in specs]
    gpu = sum(g for g, _ in costs)
    workers = sum(g + f for g, f in costs) / max(1, int(jobs))
    return max(gpu, workers) / 60.0


def gpu_throughput_row(net, size, batch_size, size_name=None, n_images=60000, model=H200):
    """The per-epoch row of ``net`` at ``size`` on the H200 (an ESTIMATE), in the form of a
    ``throughput.csv`` row."""
    macs, acts, layers = network_facts(net, size)
    seconds = gpu_epoch_seconds(net, size, n_images, batch_size, model=model)
    return {"net": net, "size": size_name or _size_name(net, _size_keywords(net, size)),
            "device": f"{model['device']} (estimate)", "seconds_per_epoch": round(seconds, 2),
            "status": "estimate",
            "basis": (f"not measured: reproduce.cost.H200 model, {macs / 1e6:.1f} M MAC, "
                      f"{acts / 1e6:.3f} M conv outputs, {layers} conv layers per 28x28 image; "
                      f"{n_images} images at batch {batch_size}, one process alone on the GPU; "
                      "training pass only")}
