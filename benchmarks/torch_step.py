"""Keras on PyTorch against the native PyTorch loop, on one thread, the variants interleaved in one process.

    KERAS_BACKEND=torch python benchmarks/torch_step.py                  # mlp at 256, cnn at 32
    KERAS_BACKEND=torch python benchmarks/torch_step.py --rounds 9 --json torch_step.json

For each model (bench's shapes, ``backendlab/bench/shapes.py``), in a process of its own (torch.compile
retraces the same Keras code for a second model with dynamic shapes, which Inductor failed to lower for
the CNN's backward), one pass over its samples per variant and round, the variants in turn
within each round, so that a machine whose load changes slows them all alike; after ``--warmup``
untimed rounds (compiling included), the median of the timed rounds, as samples/s and as a fraction
of the native loop's:

- ``native``: bench's hand-written loop (``torch.nn``, ``torch.optim.Adam``, eager autograd);
- ``wholestep``: ``TrainStep(jit_compile=True)``, the whole step as one ``torch.compile`` graph;
- ``fit-wholestep``: ``model.fit`` inside ``whole_step_fit(model)``;
- ``fit-jit``: Keras's own ``fit(jit_compile=True)``, under ``torch.compile``;
- ``trainstep-before``: the step ``TrainStep(jit_compile=True)`` compiled before the whole-step
  graph (the forward pass and loss under ``torch.compile``, ``backward()`` and the optimizer eager).

The machine's load average is printed with each round.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")

import torch  # noqa: E402  (before Keras: one thread from the start)

torch.set_num_threads(1)

import keras  # noqa: E402

from backendlab.bench.measure import build_keras  # noqa: E402
from backendlab.bench.native import torch as native  # noqa: E402
from backendlab.bench.shapes import ADAM, LEARNING_RATE, SHAPES  # noqa: E402
from backendlab.training.step import TrainStep, whole_step_fit  # noqa: E402

#: (model, batch size, samples per pass): a pass of about half a second at native speed on one thread.
CELLS = (("mlp", 256, 16384), ("cnn", 32, 2048))


def keras_model(name: str, samples: int):
    model, loss, data = build_keras(name, {"max_samples": samples, "run": {"seed": 0}}, native)
    return model, loss, keras.optimizers.Adam(LEARNING_RATE, **ADAM), data


def tensors(data, batch: int) -> list:
    t = keras.ops.convert_to_tensor
    return [(t(data.x[i : i + batch]), t(data.y[i : i + batch])) for i in range(0, len(data.x), batch)]


def native_pass(name: str, data, batch: int):
    net = getattr(native, f"build_{name}")(SHAPES[name], 0)
    step, batches = native.make_train_step(net), native.as_batches(data.x, data.y, batch)
    return lambda: [step(x, y) for x, y in batches][-1].item()


def whole_step_pass(name: str, data, batch: int):
    model, loss, optimizer, _ = keras_model(name, len(data.x))
    step, batches = TrainStep(model, loss, optimizer, jit_compile=True), tensors(data, batch)
    return lambda: float(step.run_batches(batches)[-1])


def before_pass(name: str, data, batch: int):
    """The step as ``TrainStep(jit_compile=True)`` ran before the whole-step graph."""
    model, loss, optimizer, _ = keras_model(name, len(data.x))
    optimizer.build(model.trainable_variables)

    @torch.compile
    def forward_loss(x, y):
        return loss(y, model(x, training=True))

    def step(x, y):
        value = forward_loss(x, y)
        model.zero_grad()
        value.backward()
        with torch.no_grad():
            optimizer.apply([v.value.grad for v in model.trainable_weights], model.trainable_weights)
        return value.detach()

    batches = tensors(data, batch)
    return lambda: float([step(x, y) for x, y in batches][-1])


def fit_pass(name: str, data, batch: int, whole: bool):
    model, loss, optimizer, _ = keras_model(name, len(data.x))
    model.compile(optimizer=optimizer, loss=loss, jit_compile=True)

    def run():
        history = model.fit(data.x, data.y, batch_size=batch, epochs=1, shuffle=False, verbose=0).history
        return history["loss"][-1]

    if not whole:
        return run

    def run_whole():
        with whole_step_fit(model):
            return run()

    return run_whole


VARIANTS = {
    "native": native_pass,
    "wholestep": whole_step_pass,
    "fit-wholestep": lambda n, d, b: fit_pass(n, d, b, whole=True),
    "fit-jit": lambda n, d, b: fit_pass(n, d, b, whole=False),
    "trainstep-before": before_pass,
}


def measure(name: str, batch: int, samples: int, warmup: int, rounds: int, variants: list[str]) -> dict:
    _, _, _, data = keras_model(name, samples)
    passes = {v: VARIANTS[v](name, data, batch) for v in variants}
    times: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(warmup + rounds):
        for v, run in passes.items():
            start = time.perf_counter()
            run()
            if r >= warmup:
                times[v].append(time.perf_counter() - start)
        load = ", ".join(f"{a:.2f}" for a in os.getloadavg())
        print(f"  {name} round {r + 1}/{warmup + rounds} done (load average {load})", flush=True)
    rates = {v: samples / statistics.median(t) for v, t in times.items()}
    return {
        "model": name,
        "batch_size": batch,
        "samples_per_pass": samples,
        "samples_per_sec": rates,
        "vs_native": {v: rate / rates["native"] for v, rate in rates.items()} if "native" in rates else {},
        "pass_s": times,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,cnn", help="mlp, cnn, or both (mlp at batch 256, cnn at 32)")
    parser.add_argument("--samples", type=int, help="samples per pass (default: mlp 16384, cnn 2048)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first (default 2)")
    parser.add_argument("--rounds", type=int, default=9, help="timed rounds (default 9)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="which of: " + ", ".join(VARIANTS))
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    models = args.models.split(",")
    if len(models) > 1:  # one process per model
        results = []
        for name in models:
            with tempfile.NamedTemporaryFile(suffix=".json") as out:
                argv = [*sys.argv[1:], "--models", name, "--json", out.name]  # the last of each flag wins
                subprocess.run([sys.executable, __file__, *argv], check=True)
                results += json.loads(Path(out.name).read_text())
    else:
        variants = args.variants.split(",")
        results = []
        for name, batch, samples in CELLS:
            if name != models[0]:
                continue
            print(f"{name}, batch {batch}, {torch.get_num_threads()} thread:", flush=True)
            cell = measure(name, batch, args.samples or samples, args.warmup, args.rounds, variants)
            results.append(cell)
            for v in variants:
                ratio = cell["vs_native"].get(v)
                print(f"  {v:<17} {cell['samples_per_sec'][v]:>9,.0f} samples/s  {ratio:.2f}x native", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
