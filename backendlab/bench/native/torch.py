"""PyTorch: ``torch.nn`` modules, ``torch.optim.Adam``, eager autograd (what a PyTorch user writes)."""

from __future__ import annotations

import time

import torch
from torch import nn

from backendlab._impl.torch import devices, sync, threads  # noqa: F401  (one definition per backend)
from backendlab.bench.shapes import ADAM, LEARNING_RATE, BenchShape

COMPILER = "eager"


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def set_threads(n: int, inter: int | None = None) -> None:
    torch.set_num_threads(n)
    if inter is not None:
        try:
            torch.set_num_interop_threads(inter)  # only before the first inter-op parallel work
        except RuntimeError as exc:
            raise ValueError(f"PyTorch's inter-op thread count is fixed once used: {exc}") from None


def matmul_gflops(n: int, repeats: int = 10) -> tuple[float, str]:
    dev = _device()
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(dev)
    b = torch.randn(n, n, generator=gen).to(dev)
    best = float("inf")
    for _ in range(repeats + 1):  # the first is warm-up
        start = time.perf_counter()
        c = a @ b
        sync()
        best = min(best, time.perf_counter() - start)
    del c
    return 2.0 * n**3 / best / 1e9, str(dev)


def device_peak_mb() -> float | None:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return None


def build_mlp(shape: BenchShape, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    widths = (shape.input_shape[-1], *shape.hidden)
    layers: list[nn.Module] = []
    for n_in, n_out in zip(widths, widths[1:]):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(widths[-1], shape.classes)).to(_device())


def build_cnn(shape: BenchShape, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    height, width, channels = shape.input_shape
    layers: list[nn.Module] = []
    for filters in shape.hidden:
        layers += [nn.Conv2d(channels, filters, shape.kernel), nn.ReLU(), nn.MaxPool2d(2)]
        channels, height, width = filters, (height - shape.kernel + 1) // 2, (width - shape.kernel + 1) // 2
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels * height * width, shape.classes)).to(_device())


def count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def as_batches(x, y, batch_size: int) -> list:
    xt = torch.from_numpy(x)
    if xt.ndim == 4:  # NHWC -> NCHW, PyTorch's layout
        xt = xt.permute(0, 3, 1, 2).contiguous()
    xt, yt = xt.to(_device()), torch.from_numpy(y).long().to(_device())
    return [(xt[i : i + batch_size], yt[i : i + batch_size]) for i in range(0, len(xt), batch_size)]


def make_train_step(net: nn.Module):
    optimizer = torch.optim.Adam(
        net.parameters(), lr=LEARNING_RATE, betas=(ADAM["beta_1"], ADAM["beta_2"]), eps=ADAM["epsilon"]
    )
    loss_fn = nn.CrossEntropyLoss()
    net.train()

    def step(x, y):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), y)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def make_predict_step(net: nn.Module):
    net.eval()

    def step(x):
        with torch.inference_mode():
            return net(x)

    return step
