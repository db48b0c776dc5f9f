"""The tune orchestrator: one worker per backend and thread setting, one after the other; writes the report.

It imports no framework. Workers never run side by side, so no backend's timings share the
CPU with another's. A first worker per backend times the native loop, the default settings and
each axis changed alone, and then the fastest values together; a worker per thread setting then
times the default and that backend's best so far with those thread counts (a framework's thread
pools are sized when it starts), judged against the first worker's default. A worker that fails
keeps the rows it wrote; the other backends go on.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from backendlab.backends import BACKEND_NAMES, plan
from backendlab.bench.results import WorkerFailure
from backendlab.bench.run import BACKEND_WORDING, machine_for
from backendlab.bench.shapes import SHAPES
from backendlab.callables import SENT_FOLDER, send_each, send_run
from backendlab.data import check_data
from backendlab.errors import UsageError
from backendlab.results import read_json
from backendlab.runspec import RunSpec
from backendlab.specs import check_spec
from backendlab.tune.grid import TOLERANCES, Grid, Setting, default_setting, single_axis_settings
from backendlab.tune.report import snippet, write_outputs
from backendlab.tune.results import Best, NativeRow, Profile, TuneReport, TuneRow
from backendlab.tune.worker import handle
from backendlab.workers.protocol import Job
from backendlab.workers.runner import run_job


@dataclass(frozen=True)
class TuneOptions:
    models: tuple[str, ...] = ("mlp",)
    backends: tuple[str, ...] = BACKEND_NAMES
    batch_sizes: tuple[int, ...] = (256,)
    grid: Grid = field(default_factory=Grid)
    repeats: int = 3
    warmup: int = 1  # untimed passes after the parity steps, before the timed repeats
    samples_per_repeat: int = 4096
    parity_steps: int = 32  # rounded up to a multiple of every steps_per_execution tried
    budget_s: float | None = None  # per backend: settings past it are recorded as skipped
    native: bool = True
    profile: bool = True
    run: RunSpec = field(default_factory=RunSpec)  # the seed, and a user model's data
    input_shape: tuple[int, ...] | None = None
    timeout_s: float = 1200.0  # per worker
    # (model, batch size) pairs to tune instead of every model at every batch size.
    cells: tuple[tuple[str, int], ...] = ()

    @property
    def pairs(self) -> list[tuple[str, int]]:
        return list(self.cells) or [(m, b) for m in self.models for b in self.batch_sizes]

    def check(self) -> TuneOptions:
        for model, _ in self.pairs:
            if model not in SHAPES and ":" not in model:
                raise UsageError(f"unknown model {model!r}: use {', '.join(SHAPES)} or path/to/file.py:build")
            if ":" in model:
                check_spec(model, "model")
        check_data(self.run.data)
        for policy in self.grid.dtype_policies:
            if policy not in TOLERANCES:
                raise UsageError(f"unknown dtype policy {policy!r}: valid are {', '.join(TOLERANCES)}")
        return self

    @property
    def steps(self) -> int:
        """Parity steps: the same count for every setting, whole executions of every steps_per_execution."""
        unit = math.lcm(*self.grid.steps_per_execution)
        return unit * -(-self.parity_steps // unit)


def make_job(opts: TuneOptions, settings: list[Setting], **extra) -> dict:
    steps = opts.steps
    batch = max(b for _, b in opts.pairs)
    largest = batch * max(opts.grid.steps_per_execution)
    samples = max(-(-opts.samples_per_repeat // largest) * largest + largest, steps * batch)
    return {
        "cells": [{"model": m, "batch_size": b} for m, b in opts.pairs],
        "settings": [s.to_dict() for s in settings],
        "repeats": opts.repeats,
        "warmup": opts.warmup,
        "samples_per_repeat": opts.samples_per_repeat,
        "max_samples": samples,
        "parity_steps": steps,
        "budget_s": opts.budget_s,
        "run": opts.run.to_dict(),
        "input_shape": list(opts.input_shape) if opts.input_shape else None,
        "threads": None,
        "references": None,
        "twins": None,  # per cell, the default's perturbed twins (compare.floor) where the first worker trained them
        "native": opts.native,
        "profile": opts.profile,
        "search": True,
    } | extra


def best_so_far(rows: list[TuneRow]) -> list[Setting]:
    """Each cell's fastest setting that kept parity, once each."""
    found: list[Setting] = []
    for cell in dict.fromkeys((r.model, r.batch_size) for r in rows):
        kept = [r for r in rows if (r.model, r.batch_size) == cell and r.ok and r.parity and r.parity.kept]
        if kept:
            setting = Setting.from_dict(max(kept, key=lambda r: r.samples_per_sec).settings)
            if setting not in found:
                found.append(setting)
    return found


def run_tune(
    opts: TuneOptions,
    out_dir: str | os.PathLike,
    *,
    json_path=None,
    on_progress: Callable[..., None] | None = None,
) -> TuneReport:
    """Tune ``opts.models`` on each backend; writes ``tune.json``, ``tune.md`` and ``tune.png`` to ``out_dir``.

    ``on_progress(worker, stage, done=None, total=None, failed=False)``: each worker's progress
    (:mod:`backendlab.cli_display` draws it).
    """
    out_dir = Path(out_dir)
    # Models and data given as Python objects go to the workers as files in out_dir (backendlab.callables).
    sent = send_each([*opts.models, *(m for m, _ in opts.cells)], out_dir / SENT_FOLDER)
    opts = replace(
        opts,
        models=tuple(sent[id(m)] for m in opts.models),
        cells=tuple((sent[id(m)], b) for m, b in opts.cells),
        run=send_run(opts.run, out_dir / SENT_FOLDER),
    )
    opts.check()
    plan(opts.backends, wording=BACKEND_WORDING)
    progress = on_progress or (lambda *args, **kwargs: None)
    start = time.perf_counter()
    rows: list[TuneRow] = []
    natives: list[NativeRow] = []
    profiles: list[Profile] = []
    failures: list[WorkerFailure] = []
    matmul: dict = {}

    def run_one(name: str, backend: str, job: dict, workdir: Path) -> dict | None:
        progress(name, "starting", 0, 1)

        def on_worker(p: dict) -> None:
            progress(name, p.get("stage", ""), p.get("done", 0), p.get("total") or 1)

        # A process of its own: the thread counts are set before the framework starts.
        outcome = run_job(Job(backend, handle, job, workdir, opts.timeout_s, on_worker, fresh=True))
        if outcome.ok:
            progress(name, f"done in {outcome.wall_s:.0f}s")
            return outcome.result
        failures.append(WorkerFailure(backend, outcome.status, outcome.message, outcome.log_tail))
        progress(name, f"{outcome.status}: {outcome.message[:60]}", failed=True)
        partial = workdir / "partial.json"
        return read_json(partial) if partial.exists() else None

    def collect(result: dict | None) -> list[TuneRow]:
        if not result:
            return []
        got = [TuneRow.from_dict(r) for r in result["rows"]]
        rows.extend(got)
        natives.extend(NativeRow(**n) for n in result.get("native", []))
        profiles.extend(Profile(**p) for p in result.get("profiles", []))
        return got

    for backend in opts.backends:
        first_dir = out_dir / "workers" / backend
        job = make_job(opts, single_axis_settings(opts.grid))
        got = collect(run_one(backend, backend, job, first_dir))
        cells = len(job["cells"])
        references = [str(first_dir / "parity" / f"cell{i}_0.npz") for i in range(cells)]
        twins = [sorted(str(p) for p in (first_dir / "parity").glob(f"cell{i}_twin*.npz")) for i in range(cells)]
        if not all(Path(p).exists() for p in references):
            continue  # no default to judge against: the failure is already recorded
        for intra, inter in opts.grid.threads:
            if intra is None and inter is None:
                continue
            candidates = [default_setting(), *best_so_far(got)]
            settings = list(dict.fromkeys(s.replace(intra_threads=intra, inter_threads=inter) for s in candidates))
            job = make_job(
                opts,
                settings,
                threads=[intra, inter],
                references=references,
                twins=twins,
                native=False,
                profile=False,
                search=False,
            )
            name = f"{backend} threads {intra}/{inter}"
            collect(run_one(name, backend, job, out_dir / "workers" / f"{backend}-threads-{intra}-{inter}"))
    finish(rows, natives)
    report = TuneReport(
        machine=machine_for(opts.backends, matmul, {}),
        rows=rows,
        best=pick_best(rows),
        native=natives,
        profiles=profiles,
        failures=failures,
        parity_steps=opts.steps,
        tolerances={k: list(v) for k, v in TOLERANCES.items()},
        wall_s=time.perf_counter() - start,
    )
    write_outputs(report, out_dir, json_path)
    return report


def finish(rows: list[TuneRow], natives: list[NativeRow]) -> None:
    """Each row's speed-up over its backend's default settings and its ratio to the native loop."""
    defaults = {(r.backend, r.model, r.batch_size): r for r in rows if r.is_default and r.ok}
    native = {(n.backend, n.model, n.batch_size): n for n in natives if n.status == "ok"}
    for row in rows:
        if not row.ok:
            continue
        key = (row.backend, row.model, row.batch_size)
        if key in defaults:
            row.speedup_vs_default = row.samples_per_sec / defaults[key].samples_per_sec
        if key in native:
            row.native_ratio = row.samples_per_sec / native[key].samples_per_sec


def pick_best(rows: list[TuneRow]) -> list[Best]:
    """Per backend, model and batch size: the fastest setting that kept parity."""
    best = []
    for key in dict.fromkeys((r.backend, r.model, r.batch_size) for r in rows):
        kept = [r for r in rows if (r.backend, r.model, r.batch_size) == key and r.ok and r.parity and r.parity.kept]
        if not kept:
            continue
        win = max(kept, key=lambda r: r.samples_per_sec)
        best.append(
            Best(
                *key,
                settings=win.settings,
                samples_per_sec=win.samples_per_sec,
                speedup_vs_default=win.speedup_vs_default,
                native_ratio=win.native_ratio,
                parity=win.parity.verdict,
                label=win.label,
                snippet=snippet(win.backend, Setting.from_dict(win.settings)),
            )
        )
    return best
