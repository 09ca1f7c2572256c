"""varshift.torch under torch.distributed: 2 CPU processes (gloo), each with half the data,
store the statistics of one process on all the data."""

import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")
import torch.distributed as dist  # noqa: E402
from torch import nn  # noqa: E402

import varshift.torch as vt  # noqa: E402

if not (dist.is_available() and dist.is_gloo_available()):
    pytest.skip("torch.distributed with the gloo backend is not available", allow_module_level=True)

WORKER = textwrap.dedent("""
    import sys
    import torch
    import torch.distributed as dist
    import varshift.torch as vt

    rank, world, folder = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank,
                            world_size=world)
    model, x = torch.load(f"{folder}/case.pt", weights_only=False)
    shard = x.chunk(world)[rank]
    one = vt.recalibrate_bn(model, shard, batch_size=25)
    seq = vt.recalibrate_bn(model, shard, mode="sequential", batch_size=25)
    shift = vt.measure_shift(model, shard)
    torch.save({"one": one.state_dict(), "seq": seq.state_dict(),
                "real_var": shift["real_var"].tolist(), "count": shift["count"].tolist()},
               f"{folder}/rank{rank}.pt")
    dist.destroy_process_group()
""")


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3), nn.Dropout(0.4), nn.BatchNorm2d(6), nn.ReLU(),
                         nn.Conv2d(6, 4, 3), nn.BatchNorm2d(4), nn.Flatten(),
                         nn.Dropout(0.3), nn.Linear(4 * 4 * 4, 5), nn.BatchNorm1d(5)).eval()


def test_two_gloo_processes_store_the_statistics_of_all_the_data(tmp_path):
    model = _model()
    x = torch.randn(200, 3, 8, 8) * 2 + 1
    torch.save((model, x), tmp_path / "case.pt")
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    procs = [subprocess.Popen([sys.executable, str(script), str(r), "2", str(tmp_path)],
                              stderr=subprocess.PIPE, text=True) for r in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err[-2000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    # one process on all the data; batches of 25 split the same way as the shards of 100
    one = vt.recalibrate_bn(model, x, batch_size=25).state_dict()
    seq = vt.recalibrate_bn(model, x, mode="sequential", batch_size=25).state_dict()
    shift = vt.measure_shift(model, x)
    for got in ranks:
        for key in one:
            if key.endswith(("running_mean", "running_var")):
                torch.testing.assert_close(got["one"][key], one[key], rtol=1e-5, atol=1e-6)
                torch.testing.assert_close(got["seq"][key], seq[key], rtol=1e-5, atol=1e-6)
        assert got["count"] == shift["count"].tolist() == [200 * 36, 200 * 16, 200]
        assert got["real_var"] == pytest.approx(shift["real_var"].tolist(), rel=1e-6)
    # and a shard alone gives other numbers: the all-reduce is what makes them equal
    half = vt.recalibrate_bn(model, x[:100], batch_size=25).state_dict()
    assert not torch.allclose(half["2.running_var"], one["2.running_var"], rtol=1e-4)
