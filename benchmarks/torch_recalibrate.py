"""``varshift.torch.recalibrate_bn`` against one inference pass and ``update_bn``, on resnet18.

torchvision's resnet18 (no weights, 20 BN modules) with a Dropout inserted before the second
convolution of every block, on random images; all on the CPU (or ``--device``). Times, each
the best of ``--repeat`` runs over the same images and batches:

- one inference pass (``model.eval()``, ``torch.no_grad()``);
- ``recalibrate_bn(model, loader)`` (``mode="one_pass"``, dropout off, exact pooled moments,
  on a copy: the copy is included);
- ``torch.optim.swa_utils.update_bn(loader, copy)`` (the peer: the whole model in training
  mode, dropout on, per-batch variances averaged), the copy included too.

Prints the ratios from this one run: recalibrate / inference (goal <= 1.3) and
recalibrate / update_bn.

    python benchmarks/torch_recalibrate.py [--images 512] [--size 64] [--batch 64] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
import time


def resnet18_with_dropout(rate=0.1):
    """resnet18 (``weights=None``) with ``Dropout(rate)`` before every block's ``conv2``."""
    import torchvision
    from torch import nn

    model = torchvision.models.resnet18(weights=None)
    for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
        for block in layer:
            block.conv2 = nn.Sequential(nn.Dropout(rate), block.conv2)
    return model.eval()


def best_of(repeat, fn):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--size", type=int, default=64, help="image height and width")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    import torch
    from torch.optim.swa_utils import update_bn

    import varshift.torch as vt

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = resnet18_with_dropout().to(args.device)
    x = torch.randn(args.images, 3, args.size, args.size, device=args.device)
    loader = [x[i:i + args.batch] for i in range(0, args.images, args.batch)]

    def inference():
        with torch.no_grad():
            for batch in loader:
                model(batch)

    inference()  # warm-up: allocator, kernels
    t_inf = best_of(args.repeat, inference)
    t_ours = best_of(args.repeat, lambda: vt.recalibrate_bn(model, loader))
    t_peer = best_of(args.repeat, lambda: update_bn(loader, copy.deepcopy(model)))
    print(f"resnet18 + dropout, {args.images} images {args.size}x{args.size}, batch "
          f"{args.batch}, {args.threads} thread(s), {args.device}: best of {args.repeat}")
    print(f"  inference pass          {t_inf:8.3f} s")
    print(f"  recalibrate_bn one_pass {t_ours:8.3f} s   ratio to inference "
          f"{t_ours / t_inf:5.2f} (goal <= 1.3)")
    print(f"  update_bn (peer)        {t_peer:8.3f} s   ratio to inference "
          f"{t_peer / t_inf:5.2f}; recalibrate / update_bn {t_ours / t_peer:5.2f}")
    return {"inference": t_inf, "recalibrate": t_ours, "update_bn": t_peer}


if __name__ == "__main__":
    main()
