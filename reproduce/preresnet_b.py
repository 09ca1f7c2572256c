"""Why is PreResNet with dropout-(b) 0.5 as bad as with (a) 0.5 at the quick scale?

Three explanations, one variant each, dropout-(a) 0.5 against (b) 0.5 on PreResNet (quick's
data: 4,000 Fashion-MNIST training images, batch 64):

- ``quick``: the quick setup itself (width 8: the 1x1 convolution after the (b) dropout has a
  fan-in of 8, 16, 32), several seeds: is b's bad error one unlucky seed?
- ``width16``: width 16 (fan-in 16, 32, 64, as in PreResNet-164): does a wider 1x1 convolution
  average the (b) noise away, as Eq. 14 predicts for aligned weights?
- ``epochs8``: twice the epochs: is it under-training (dropout 0.5 underfits at 4 epochs)?
- ``bs32``: twice the steps at the same cost in images (batch 32): steps or epochs?

Each run records the test error, the mean/max shift statistic over BN layers and the final
training-mode accuracy of the training pass. Run: ``python -m reproduce.preresnet_b [OUT.jsonl]``
(about 10 CPU-minutes on one thread). The findings are summarised in Fig. 4's section.
"""

from __future__ import annotations

import json
import sys

__all__ = ["VARIANTS", "PLAN", "run_one", "main"]

_QUICK = {"epochs": 4, "batch_size": 64, "lr_drops": [2, 3]}
#: variant -> (PreResNet size, recipe overrides)
VARIANTS = {
    "quick": ({"depth": 20, "width": 8}, _QUICK),
    "width16": ({"depth": 20, "width": 16}, _QUICK),
    "epochs8": ({"depth": 20, "width": 8}, {"epochs": 8, "batch_size": 64, "lr_drops": [4, 6]}),
    "bs32": ({"depth": 20, "width": 8}, {"epochs": 4, "batch_size": 32, "lr_drops": [2, 3]}),
}
#: (variant, placement, seed), most informative first
PLAN = (("quick", "b", 0), ("quick", "a", 0), ("quick", "b", 1), ("quick", "a", 1),
        ("width16", "b", 0), ("width16", "a", 0), ("epochs8", "b", 0), ("epochs8", "a", 0),
        ("bs32", "b", 0), ("bs32", "a", 0), ("quick", "b", 2), ("quick", "a", 2))


def run_one(variant, placement, seed, data_dir, out_root):
    """Train one run of the experiment; return its summary row."""
    from reproduce.runs import subset_dir
    from varshift import train

    size, overrides = VARIANTS[variant]
    data = str(subset_dir(out_root, "fashion_mnist", {"n_train": 4000, "n_test": 2000}, data_dir))
    rec = train.run({"net": "preresnet", "size": size, "placement": placement, "rate": 0.5,
                     "data": "fashion_mnist", "data_dir": data, "recipe": "cpu",
                     "overrides": overrides, "seed": seed, "adjust": False, "epoch_eval": False,
                     "train_eval_samples": 1000, "stats_samples": 1000}, progress=False)
    stat = [max(r["real_var"] / r["moving_var"], r["moving_var"] / r["real_var"])
            for r in rec["final"]["shift"]]
    return {"variant": variant, "placement": placement, "seed": seed,
            "test_error": rec["final"]["test_error"], "mean_stat": sum(stat) / len(stat),
            "max_stat": max(stat), "train_acc": rec["history"][-1]["train_acc_train_mode"]}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    out = argv[0] if argv else "preresnet_b.jsonl"
    with open(out, "a", encoding="utf-8") as fh:
        for variant, placement, seed in PLAN:
            row = run_one(variant, placement, seed, None, "results/preresnet_b")
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
