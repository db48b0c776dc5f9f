"""The benchmark orchestrator: plans the cells, runs one worker per backend, writes the report.

It imports no framework. Workers run one after the other, never side by side, so no
backend's timings share the CPU with another's. A worker that fails, crashes or times
out is reported with its log's tail; the rows it wrote before that, and every other
backend's rows, are kept.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import io
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

from backendlab.backends import BACKENDS, Wording, plan
from backendlab.bench.presets import Preset
from backendlab.bench.report import markdown_report, plot_png
from backendlab.bench.results import BenchReport, BenchRow, Machine, WorkerFailure
from backendlab.bench.shapes import SHAPES
from backendlab.bench.worker import handle
from backendlab.callables import SENT_FOLDER, send_each, send_run
from backendlab.results import atomic_write_bytes, atomic_write_text, read_json, write_json
from backendlab.workers.protocol import Job
from backendlab.workers.runner import run_job


def plan_cells(preset: Preset) -> list[dict]:
    """Every cell one backend's worker runs, Keras and native, in a fixed order."""
    cells = []
    for model in preset.models:
        for batch_size in preset.batch_sizes:
            for mode in preset.modes:
                every = not preset.variant_models or model in preset.variant_models
                pipelines = preset.pipelines if mode == "fit" else ("arrays",)
                for jit in preset.jit_compile if every else preset.jit_compile[:1]:
                    for spe in preset.steps_per_execution if every else preset.steps_per_execution[:1]:
                        for pipeline in pipelines:
                            cells += [
                                dict(
                                    impl="keras",
                                    model=model,
                                    mode=mode,
                                    batch_size=batch_size,
                                    jit_compile=jit,
                                    steps_per_execution=spe,
                                    pipeline=pipeline,
                                    random=random,
                                )
                                for random in preset.random
                            ]
                if preset.native and model in SHAPES and SHAPES[model].native:
                    cells.append(
                        dict(
                            impl="native",
                            model=model,
                            mode=mode,
                            batch_size=batch_size,
                            jit_compile="native",
                            steps_per_execution=1,
                        )
                    )
    return cells


def make_job(preset: Preset) -> dict:
    largest = max(b * s for b in preset.batch_sizes for s in preset.steps_per_execution)
    return {
        "cells": plan_cells(preset),
        "repeats": preset.repeats,
        "warmup": preset.warmup,
        "samples_per_repeat": preset.samples_per_repeat,
        "max_samples": -(-preset.samples_per_repeat // largest) * largest + largest,
        "matmul_n": preset.matmul_n,
        "threads": preset.threads,
        "run": preset.run.to_dict(),
        "input_shape": list(preset.input_shape) if preset.input_shape else None,
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


#: bench's and tune's words for a backend they cannot run (a backend may be named twice).
BACKEND_WORDING = Wording(
    twice=None, missing="backend {name!r} needs {framework}, which is not installed: {hint}", empty=None
)


def machine_for(backends, matmul: dict, devices: dict, keras_version: str | None = None) -> Machine:
    """This machine, the framework versions of ``backends`` and the matmul peaks measured on it."""
    return Machine(
        cpu=cpu_model(),
        cores=os.cpu_count(),
        platform=platform.platform(),
        python=platform.python_version(),
        keras=keras_version or _version("keras"),
        frameworks={name: BACKENDS[name].framework_version for name in backends},
        matmul_peak_gflops=max((m["gflops"] for m in matmul.values()), default=None),
        matmul_peak_by_backend=matmul,
        devices=devices,
    )


def finish_rows(rows: list[BenchRow], peak: float | None) -> None:
    """Fill in what needs every row: the fraction of the machine's peak and the native ratio."""
    natives = {(r.backend, r.model, r.mode, r.batch_size): r for r in rows if r.impl == "native" and r.ok}
    for row in rows:
        if row.ok and peak and row.gflops_per_sec is not None:
            row.fraction_of_peak = row.gflops_per_sec / peak
        native = natives.get((row.backend, row.model, row.mode, row.batch_size))
        if row.impl == "keras" and row.ok and native is not None:
            row.native_ratio = row.samples_per_sec / native.samples_per_sec


def run_preset(
    preset: Preset,
    out_dir: str | os.PathLike,
    *,
    json_path: str | os.PathLike | None = None,
    on_progress: Callable[..., None] | None = None,
) -> BenchReport:
    """Run ``preset`` on each of its backends and write ``bench.json``, ``bench.md``, ``bench.png``.

    ``on_progress(backend, stage, done=None, total=None, failed=False)``: each backend's progress,
    in cells (:mod:`backendlab.cli_display` draws it).
    """
    plan(preset.backends, wording=BACKEND_WORDING)
    out_dir = Path(out_dir)
    # Models and data given as Python objects go to the workers as files in out_dir (backendlab.callables).
    sent = send_each(preset.models, out_dir / SENT_FOLDER)
    run = send_run(preset.run, out_dir / SENT_FOLDER)
    preset = dataclasses.replace(preset, models=tuple(sent[id(m)] for m in preset.models), run=run)
    progress = on_progress or (lambda *args, **kwargs: None)
    job = make_job(preset)
    cells = len(job["cells"])
    start = time.perf_counter()
    rows, failures, matmul, devices, keras_version = [], [], {}, {}, _version("keras")
    for name in preset.backends:
        progress(name, "waiting", 0, cells)
    for name in preset.backends:
        progress(name, "starting")
        workdir = out_dir / "workers" / name
        outcome = run_job(
            Job(
                name,
                handle,
                job,
                workdir,
                timeout=preset.timeout_s,
                on_progress=lambda p, name=name: progress(name, p.get("stage", ""), p.get("done", 0)),
                fresh=True,  # a process to itself: measured with nothing else imported or running
            )
        )
        if outcome.ok:
            result = outcome.result
            rows += [BenchRow.from_dict(r) for r in result["rows"]]
            matmul[name], devices[name] = result["matmul"], result["devices"]
            keras_version = result.get("keras_version") or keras_version
            progress(name, f"done in {outcome.wall_s:.0f}s", cells)
        else:
            partial = workdir / "rows.json"
            if partial.exists():
                rows += [BenchRow.from_dict(r) for r in read_json(partial)]
            failures.append(WorkerFailure(name, outcome.status, outcome.message, outcome.log_tail))
            progress(name, f"{outcome.status}: {outcome.message[:60]}", failed=True)
    peak = max((m["gflops"] for m in matmul.values()), default=None)
    finish_rows(rows, peak)
    machine = machine_for(preset.backends, matmul, devices, keras_version)
    report = BenchReport(preset.name, machine, rows, failures, wall_s=time.perf_counter() - start)
    write_outputs(report, out_dir, json_path)
    return report


def write_outputs(report: BenchReport, out_dir: Path, json_path=None) -> None:
    write_json(out_dir / "bench.json", report.to_dict())
    if json_path:
        write_json(json_path, report.to_dict())
    atomic_write_text(out_dir / "bench.md", markdown_report(report))
    buffer = io.BytesIO()
    plot_png(report, buffer)
    atomic_write_bytes(out_dir / "bench.png", buffer.getvalue())
