"""JAX trainer against plain PyTorch on the same SqueezeNet, side by side.

    pip install -e '.[bench]'     # torch==2.13.0, CPU wheel: never a runtime dependency
    python benchmarks/vs_pytorch.py [--rounds 5] [--steps 20]

The PyTorch model is built from the same layer plan (explorer.architecture.plan),
so parameter counts are equal (checked). Same batch (128), optimiser (SGD,
momentum 0.9, lr 0.01, weight decay 5e-4), input (random uint8 images,
normalised inside the step) and labels. PyTorch runs channels-last, its faster
layout on this CPU. The two alternate round by round, so both see the same
machine; figures are medians over rounds. Ends with one key=value line.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
from common import Stepper, machine, median, spec, synthetic  # noqa: E402

from explorer import architecture as arch  # noqa: E402
from explorer import complexity, devices  # noqa: E402
from explorer.recipe import Recipe  # noqa: E402

try:
    import torch
    from torch import nn
except ImportError:
    sys.exit("benchmarks/vs_pytorch.py needs PyTorch: pip install -e '.[bench]'")


class Fire(nn.Module):
    def __init__(self, f: arch.FireSpec):
        super().__init__()
        self.squeeze = nn.Conv2d(f.in_ch, f.s1x1, 1)
        self.e1 = nn.Conv2d(f.s1x1, f.e1x1, 1) if f.e1x1 else None
        self.e3 = nn.Conv2d(f.s1x1, f.e3x3, 3, padding=1) if f.e3x3 else None
        self.shortcut = f.shortcut
        self.bypass = nn.Conv2d(f.in_ch, f.out_ch, 1) if f.shortcut == "conv" else None

    def forward(self, x):
        s = torch.relu(self.squeeze(x))
        parts = [m(s) for m in (self.e1, self.e3) if m is not None]
        y = torch.relu(torch.cat(parts, 1) if len(parts) > 1 else parts[0])
        if self.shortcut == "identity":
            y = y + x
        elif self.bypass is not None:
            y = y + self.bypass(x)
        return y


def torch_model(plan: arch.Plan) -> nn.Module:
    s = plan.spec
    layers = [
        nn.Conv2d(s.in_channels, s.conv1_filters, s.conv1_kernel, s.conv1_stride, s.conv1_padding),
        nn.ReLU(),
    ]
    if plan.stem_pool:
        layers.append(nn.MaxPool2d(3, 2, ceil_mode=True))
    for f in plan.fires:
        layers.append(Fire(f))
        if f.pool:
            layers.append(nn.MaxPool2d(3, 2, ceil_mode=True))
    layers += [
        nn.Dropout(s.dropout),
        nn.Conv2d(plan.fires[-1].out_ch, s.num_classes, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    ]
    return nn.Sequential(*layers)


def bench_pair(model: str, shape: str, rounds: int, steps: int, batch: int) -> dict:
    sp = spec(model, shape)
    plan = arch.plan(sp)
    data = synthetic(shape, n_train=batch * steps)
    recipe = Recipe(
        batch_size=batch,
        optimizer="sgd",
        learning_rate=0.01,
        momentum=0.9,
        weight_decay=5e-4,
        warmup_epochs=0.0,
        schedule="constant",
    )
    # JAX: the trainer's own compiled step, data on the device.
    stepper = Stepper(sp, recipe, data)

    def jax_steps():
        stepper.run(steps)

    # PyTorch: same plan, channels-last, same optimiser; uint8 batches normalised per step.
    net = torch_model(plan).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x_all = torch.from_numpy(data.x_train).permute(0, 3, 1, 2)  # NCHW view of NHWC
    y_all = torch.from_numpy(data.y_train).long()
    mean = torch.from_numpy(data.mean).view(1, -1, 1, 1)
    std = torch.from_numpy(data.std).view(1, -1, 1, 1)
    order = torch.randperm(len(x_all))
    net.train()

    def torch_steps():
        for j in range(steps):
            idx = order[j * batch : (j + 1) * batch]
            xb = ((x_all[idx].float() - mean) / std).contiguous(memory_format=torch.channels_last)
            loss = nn.functional.cross_entropy(net(xb), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    jax_params = complexity.summary(plan)["params"]
    torch_params = sum(p.numel() for p in net.parameters())
    assert jax_params == torch_params, (jax_params, torch_params)
    jax_steps()
    torch_steps()  # warm-up both
    tj, tt = [], []
    for _ in range(rounds):
        for fn, out in ((jax_steps, tj), (torch_steps, tt)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    jax_ips = steps * batch / median(tj)
    torch_ips = steps * batch / median(tt)
    return {
        "jax": jax_ips,
        "torch": torch_ips,
        "ratio": jax_ips / torch_ips,
        "params": jax_params,
        "torch_params": torch_params,
        "compile_s": stepper.runner.compile_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--models", default="squeezenet1_1,squeezenet1_0")
    ap.add_argument("--shapes", default="28x28x1,32x32x3")
    args = ap.parse_args()
    devices.compilation_cache(None)
    print(
        f"{machine()}; jax {jax.__version__}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads, channels-last); batch {args.batch}, SGD"
    )
    figures = {}
    for model in args.models.split(","):
        for shape in args.shapes.split(","):
            r = bench_pair(model, shape, args.rounds, args.steps, args.batch)
            print(
                f"{model:14s} {shape}: JAX {r['jax']:7.1f} img/s  PyTorch {r['torch']:7.1f} "
                f"img/s  ratio {r['ratio']:.2f}  params {r['params']:,} = "
                f"{r['torch_params']:,}  JAX compile {r['compile_s']:.1f} s"
            )
            tag = f"{model.removeprefix('squeezenet')}_{shape.replace('x', '_')}"
            figures.update(
                {f"jax_{tag}": r["jax"], f"torch_{tag}": r["torch"], f"ratio_{tag}": r["ratio"]}
            )
    print(" ".join(f"{k}={v:.2f}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
