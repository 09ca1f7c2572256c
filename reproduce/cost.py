"""What a plan costs: runs, epochs and GPU-hours from a per-network throughput table.

The table is ``reproduce/data/throughput.csv``: seconds per epoch of each network at a size on a
named device, with ``status`` ``measured`` (timed on that device) or ``estimate`` (not timed:
the ``basis`` column says how it was judged). The GPU-hour figure of a plan is

.. math:: \\text{GPU-hours} = \\frac{1}{3600} \\sum_{\\text{runs}} \\text{epochs}(r)\\,
          s_{\\text{epoch}}(\\text{net}(r))

over the training epochs only (the final shift measurement and BN adjustment of a run add a
few epochs' worth of inference) and is an estimate whenever one of its rows is.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

__all__ = ["throughput_table", "plan_cost", "format_cost", "H200", "NETWORK_FACTS",
           "count_network", "gpu_epoch_seconds", "gpu_run_seconds", "gpu_plan_minutes", "gpu_throughput_rows"]

TABLE = Path(__file__).parent / "data" / "throughput.csv"


def throughput_table(path=TABLE):
    """``{(net, size): row}`` of the throughput table (``seconds_per_epoch`` as a float)."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {(r["net"], r["size"]): {**r, "seconds_per_epoch": float(r["seconds_per_epoch"])}
            for r in rows}


def _recipe(config):
    from varshift import train

    trainer = {k: v for k, v in config.items() if k != "subset"}
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


def plan_cost(specs, table=None):
    """Per (network, data set): runs, epochs and GPU-hours (``None`` without a table row)."""
    table = throughput_table() if table is None else table
    groups = defaultdict(lambda: {"runs": 0, "epochs": 0, "gpu_hours": 0.0, "row": None})
    for spec in specs:
        c = spec.config
        g = groups[(c["net"], c["data"])]
        epochs = _epochs(c)
        g["runs"] += 1
        g["epochs"] += epochs
        row = table.get((c["net"], _size_name(c["net"], c["size"])))
        if row is None:
            g["gpu_hours"] = None
        elif g["gpu_hours"] is not None:
            g["row"] = row
            g["gpu_hours"] += epochs * row["seconds_per_epoch"] / 3600.0
    return dict(groups)


def _hours(hours):
    return f"{hours:,.0f}" if hours >= 10 else f"{hours:.2f}"


def format_cost(profile, specs, table=None):
    """The lines ``python -m reproduce plan`` prints."""
    groups = plan_cost(specs, table)
    lines = [f"profile {profile.name}: {len(specs)} training runs", "",
             f"{'network':<12} {'data':<14} {'runs':>5} {'epochs':>8} {'GPU-hours':>10}  basis"]
    total_h, estimate, devices = 0.0, False, set()
    for (net, data), g in sorted(groups.items()):
        row = g["row"]
        if g["gpu_hours"] is None:
            hours, basis = "n/a", "no throughput entry at this size (see the profile's budget note)"
            total_h = None
        else:
            hours = _hours(g["gpu_hours"])
            basis = f"{row['status']}: {row['seconds_per_epoch']:g} s/epoch on {row['device']}"
            estimate |= row["status"] != "measured"
            devices.add(row["device"])
            total_h = None if total_h is None else total_h + g["gpu_hours"]
        lines.append(f"{net:<12} {data:<14} {g['runs']:>5} {g['epochs']:>8} {hours:>10}  {basis}")
    epochs = sum(g["epochs"] for g in groups.values())
    lines.append(f"{'total':<27} {len(specs):>5} {epochs:>8} "
                 f"{'n/a' if total_h is None else _hours(total_h):>10}")
    if total_h is not None and groups:
        kind = "ESTIMATE (throughput not measured)" if estimate else "from measured throughput"
        lines += ["", f"GPU-hours: {_hours(total_h)} on {', '.join(sorted(devices))}, {kind}; "
                      "training epochs only."]
    elif profile.budget_note:
        lines += ["", profile.budget_note]
    return lines


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

#: Counted (not estimated) by :func:`count_network` for 28x28x1 inputs: multiply-accumulates
#: per image (conv + dense), conv output elements per image, conv layers. ``size`` is the
#: profile's size name (``reproduce.cost._size_name``).
NETWORK_FACTS = {
    ("preresnet", "paper"): (189.4e6, 2.499e6, 166),
    ("wrn", "paper"): (4014.2e6, 1.988e6, 28),
    ("resnext29", "paper"): (4123.7e6, 6.573e6, 31),
    ("densenet_bc", "paper"): (220.1e6, 1.121e6, 99),
    ("preresnet", "gpu"): (46.1e6, 0.655e6, 40),
    ("resnext29", "gpu"): (52.6e6, 0.696e6, 31),
    ("wrn", "gpu"): (77.2e6, 0.232e6, 16),
    ("densenet_bc", "gpu"): (55.1e6, 0.439e6, 39),
}


def count_network(net, size_keywords, input_shape=(28, 28, 1)):
    """``(MACs, conv outputs, conv layers)`` per image of ``net`` built with ``size_keywords``."""
    from varshift import nets

    model = nets.build(net, 10, input_shape=input_shape, **size_keywords)
    macs = acts = layers = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
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
    """Estimated H200 seconds of one pass over ``n_images`` (:data:`H200`; an ESTIMATE)."""
    macs, acts, layers = NETWORK_FACTS[(net, size)]
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
    net, size = config["net"], _size_name(config["net"], config["size"])
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
        bn_layers = NETWORK_FACTS[(net, size)][2]
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


def gpu_throughput_rows(size, batch_sizes, n_images=60000, model=H200):
    """Rows of ``throughput.csv`` for the networks at ``size`` on the H200 (ESTIMATES)."""
    rows = []
    for (net, s), (macs, acts, layers) in NETWORK_FACTS.items():
        if s != size:
            continue
        seconds = gpu_epoch_seconds(net, s, n_images, batch_sizes[net], model=model)
        rows.append({"net": net, "size": s, "device": f"{model['device']} (estimate)",
                     "seconds_per_epoch": round(seconds, 2), "status": "estimate",
                     "basis": (f"not measured: reproduce.cost.H200 model, {macs / 1e6:.1f} M MAC, "
                               f"{acts / 1e6:.3f} M conv outputs, {layers} conv layers per 28x28 "
                               f"image; {n_images} images at batch {batch_sizes[net]}, one "
                               "process alone on the GPU; training pass only")})
    return rows
