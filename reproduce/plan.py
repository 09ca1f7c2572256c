"""The plan of training runs: what one run is (:class:`RunSpec`), its key, and the order in
which a plan trains.

A run is one call of ``varshift.train.run(config)``. Its key (:func:`run_key`) is a hash of
the full configuration: network, size, placement, noise, rate, data set, recipe, seed,
the evaluation hooks, save_model, and everything else that changes the numbers, among them ``threads``
(the CPU threads of the kernels, fixed by the profile, never taken from the machine) and
``backend`` (the Keras backend); not the data folder, which changes where data is read
from, not what is computed. Fig. 4, Fig. 5 and Table 3 all read the same dropout-(a) 0.5
run, so it is trained once (:func:`merge_specs`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field

__all__ = ["RunSpec", "run_spec", "run_key", "noise_value", "merge_specs", "priority",
           "default_backend", "fields_layout", "evaluations_layout", "resolve_size"]

#: bump when the meaning of a record changes, to invalidate every cache (new config fields such
#: as ``threads`` and ``backend`` change every key by themselves)
CACHE_VERSION = 1


@dataclass(frozen=True)
class RunSpec:
    """One training run: ``config`` is what ``varshift.train.run`` receives (no data_dir)."""

    config: dict = field(hash=False, compare=False)
    key: str = ""

    @property
    def label(self):
        c = self.config
        noise = "" if c["noise"] == "dropout" else f" {c['noise']}"
        return (f"{c['net']} {c['placement']}{noise} {noise_value(c):g} {c['data']} "
                f"seed {c['seed']}")


def noise_value(config):
    """The noise parameter of a run config: ``beta`` for Uout, ``rate`` for the dropout kinds."""
    from varshift.noise import get

    return float(config.get(get(config["noise"]).param, 0.0))


def run_key(config):
    """Hash of a run's full configuration (``data_dir`` excluded): the cache key.

    The first 16 hex digits of the SHA-256 of ``{"v": CACHE_VERSION, "config": config}`` as
    JSON with sorted keys. Stable: the same config gives the same key in any process, on any
    machine; any field that changes the numbers (``threads``, ``backend`` included) changes it.
    """
    clean = {k: v for k, v in config.items() if k != "data_dir"}
    blob = json.dumps({"v": CACHE_VERSION, "config": clean}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def resolve_size(net, size):
    """The size keywords of ``net`` under a profile's ``size``: ``"paper"`` (the builder's
    defaults: ``{}``), ``"small"`` (``varshift.nets.SMALL_SIZES[net]``), per-network sizes
    ``{net: keywords}`` (a network they do not name: its small size) or keywords for every
    network."""
    from varshift import nets

    if size == "paper":
        return {}
    if size == "small":
        return dict(nets.SMALL_SIZES[net])
    if size and set(size) <= set(nets.NETWORKS):  # per-network sizes ({net: size keywords})
        return dict(size[net]) if net in size else dict(nets.SMALL_SIZES[net])
    return dict(size)


#: settings whose runs also compute Table 3's "Adjust BN" errors (the ``adjust_bn`` hook)
ADJUST_SETTINGS = {("a", "dropout", 0.5), ("b", "dropout", 0.5)}


#: settings whose runs are evaluated after every epoch (Fig. 5 reads their per-epoch accuracy);
#: the others are evaluated once, after training
EPOCH_EVAL_SETTINGS = {("none", "dropout", 0.0), ("a", "dropout", 0.5)}

#: settings whose runs store Fig. 6's outputs (the ``fig6`` hook), on the profile's first network
FIG6_SETTINGS = {("a", "dropout", 0.5)}


def run_spec(profile, net, placement="none", rate=0.0, *, noise="dropout", beta=0.0, data=None,
             seed=0, save_model=False, adjust=None, fig6=None):
    """The :class:`RunSpec` of one training run under ``profile``.

    ``placement="none"`` or a zero noise parameter (``rate`` for the dropout kinds, ``beta``
    for Uout; the config holds that one only) both mean the no-dropout baseline and give the
    same run, so Fig. 4's 0 point, Table 4's and Table 6's baselines share one training.
    The config's ``evaluations`` (:mod:`reproduce.evaluations`) always hold ``cos2``;
    ``adjust=None`` adds the "Adjust BN" errors only where Table 3 reads them
    (:data:`ADJUST_SETTINGS`); ``fig6=None`` adds Fig. 6's outputs only where Fig. 6 reads
    them (:data:`FIG6_SETTINGS` on ``profile.networks[0]``).
    """
    from reproduce.evaluations import evaluations_config
    from varshift.noise import get

    param = get(noise).param
    value = float(beta if param == "beta" else rate)
    if placement == "none" or value == 0.0:
        placement, noise, param, value = "none", "dropout", "rate", 0.0
    if adjust is None:
        adjust = (placement, noise, value) in ADJUST_SETTINGS
    if fig6 is None:
        fig6 = (placement, noise, value) in FIG6_SETTINGS and net == profile.networks[0]
    config = {
        "net": net,
        "size": resolve_size(net, profile.size),
        "placement": placement,
        "noise": noise,
        param: value,
        "data": data or profile.data[0],
        "recipe": profile.recipe_kind,
        "overrides": {**profile.recipe, **profile.net_recipe.get(net, {})},
        "seed": int(seed),
        "save_model": bool(save_model),
        "train_eval_samples": profile.eval_samples,
        "stats_samples": profile.eval_samples,
        "eval_batch_size": profile.eval_batch_size,
        "evaluations": evaluations_config(adjust=bool(adjust), fig6=bool(fig6),
                                          adjust_samples=profile.adjust_samples),
        "epoch_eval": (placement, noise, value) in EPOCH_EVAL_SETTINGS,
        "threads": int(profile.threads),
        "backend": profile.backend or default_backend(),
    }
    if profile.subset:
        config["subset"] = dict(profile.subset)  # RunConfig.subset: varshift.data.take_subset
    if profile.config_layout == "fields":
        config = fields_layout(config, profile.adjust_samples)
    return RunSpec(config=config, key=run_key(config))


def fields_layout(config, adjust_samples):
    """``config`` with its end-of-run work named as records written before the evaluation
    hooks named it: ``adjust`` (Table 3's Adjust BN), ``adjust_samples`` and ``fig6`` instead
    of ``evaluations`` (``cos2`` ran in every run then too). :func:`evaluations_layout` undoes
    it."""
    out = {k: v for k, v in config.items() if k != "evaluations"}
    evaluations = config.get("evaluations") or {}
    out.update(adjust="adjust_bn" in evaluations, adjust_samples=adjust_samples,
               fig6="fig6" in evaluations)
    return out


def evaluations_layout(config):
    """A run config in the current layout (``evaluations``), from either layout."""
    if "evaluations" in config or not {"adjust", "fig6"} <= set(config):
        return dict(config)
    from reproduce.evaluations import evaluations_config

    out = {k: v for k, v in config.items() if k not in ("adjust", "adjust_samples", "fig6")}
    out["evaluations"] = evaluations_config(adjust=bool(config["adjust"]),
                                            fig6=bool(config["fig6"]),
                                            adjust_samples=config.get("adjust_samples"))
    return out


#: the backend of a profile that names none, when ``KERAS_BACKEND`` names none either
DEFAULT_BACKEND = "tensorflow"


def default_backend():
    """The backend of a profile that names none: the user's ``KERAS_BACKEND`` (one of
    ``tensorflow``, ``jax``, ``torch``), else :data:`DEFAULT_BACKEND`. It becomes part of
    every run's config and key, so it is never a silent choice."""
    env = os.environ.get("KERAS_BACKEND", "")
    return env if env in ("tensorflow", "jax", "torch") else DEFAULT_BACKEND

_SETTING_RANK = {("none", "dropout", 0.0): 0, ("a", "dropout", 0.5): 1, ("b", "dropout", 0.5): 2}
_RATE_RANK = {0.3: 0, 0.7: 1, 0.1: 2}


def priority(spec):
    """Sort key of the plan: the runs most verdicts rest on first.

    An interrupted or time-limited run of the plan (then ``run --cached-only``) thus covers the
    most claims: first seed of the baseline and dropout 0.5 (a, b), then the ratios 0.3 and
    0.7, the tables' settings, the other seeds, and the ratio 0.1 last; cheap networks first.
    """
    from reproduce.cost import relative_cost

    c = spec.config
    rate = noise_value(c)
    setting = (c["placement"], c["noise"], rate)
    first = c["seed"] == 0
    if setting in _SETTING_RANK:
        group = 0 if first else 3
    elif c["noise"] == "dropout" and c["placement"] in ("a", "b"):
        group = 4 if rate == 0.1 else (1 if first else 3)
    else:
        group = 2 if first else 3
    return (group, _SETTING_RANK.get(setting, 3), _RATE_RANK.get(rate, 3),
            relative_cost(c["net"]), c["data"],
            c["seed"])


def merge_specs(specs):
    """Deduplicate specs by key; a run asked for with and without ``save_model`` saves it."""
    by_key = {}
    for spec in specs:
        by_key.setdefault(spec.key, spec)
    # save_model is part of the key; drop the unsaved twin of a saved run
    saved = {run_key({**s.config, "save_model": False}) for s in by_key.values()
             if s.config["save_model"]}
    merged = [s for k, s in by_key.items() if not (k in saved and not s.config["save_model"])]
    return sorted(merged, key=priority)


