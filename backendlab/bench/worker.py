"""The benchmark worker: one backend per process, started by ``backendlab.bench.run``.

It measures the float32 matmul peak of its device first, then runs the cells of its
job one after the other (measured by :mod:`backendlab.bench.measure`): a Keras model under
``fit`` or ``predict``, or the native twin of that model written directly in the framework.
A cell that raises becomes a ``failed`` row; the rows so far are written to ``rows.json``
after each cell, so a worker that dies keeps what it measured.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from backendlab.backends import BACKENDS, ensure_backend
from backendlab.bench.measure import keras_cell, native_cell, peak_rss_mb
from backendlab.bench.results import BenchRow
from backendlab.results import to_jsonable, write_json

PARTIAL_ROWS = "rows.json"


# --- the job ----------------------------------------------------------------------------


def handle(job: dict, workdir: Path, progress) -> dict:
    backend = ensure_backend()
    native = importlib.import_module(f"backendlab.bench.native.{backend.name}")  # torch before tensorflow
    thread_note = ""
    if job.get("threads"):
        try:
            native.set_threads(job["threads"])
        except ValueError as exc:
            thread_note = str(exc)
    import keras

    cells = job["cells"]
    progress(0, len(cells), stage="matmul peak", force=True)
    gflops, device = native.matmul_gflops(job["matmul_n"])
    matmul = {"gflops": gflops, "device": device, "n": job["matmul_n"]}
    rows: list[BenchRow] = []
    for i, cell in enumerate(cells):
        progress(i, len(cells), stage=describe(cell), force=True)
        row = BenchRow(
            backend.name,
            cell["impl"],
            cell["model"],
            cell["mode"],
            cell["batch_size"],
            cell["jit_compile"],
            cell["steps_per_execution"],
            native.threads(),
            note=thread_note,
            pipeline=cell.get("pipeline", "arrays"),
            random=cell.get("random", "backend"),
        )
        if cell["impl"] == "keras" and row.steps_per_execution > 1 and not backend.steps_per_execution:
            row.status, row.note = (
                "not_applicable",
                f"Keras on {backend.framework} does not allow steps_per_execution > 1",
            )
        else:
            try:
                if cell["impl"] == "keras":
                    row = keras_cell(cell, job, native, row)
                else:
                    row = native_cell(cell, job, native, row)
            except Exception as exc:  # one cell's failure must not lose the others
                text = str(exc).strip().splitlines()
                row.status, row.note = "failed", f"{type(exc).__name__}: {text[0] if text else ''}"
        row.peak_rss_mb = peak_rss_mb()
        row.device_peak_mb = native.device_peak_mb()
        rows.append(row)
        write_json(workdir / PARTIAL_ROWS, rows)
    progress(len(cells), len(cells), stage="done", force=True)
    return {
        "rows": to_jsonable(rows),
        "matmul": matmul,
        "devices": native.devices(),
        "keras_version": keras.__version__,
        "framework_version": BACKENDS[backend.name].framework_version,
    }


def describe(cell: dict) -> str:
    spe = f" spe={cell['steps_per_execution']}" if cell["steps_per_execution"] > 1 else ""
    random = f" random={cell['random']}" if cell.get("random", "backend") != "backend" else ""
    return f"{cell['impl']} {cell['model']} {cell['mode']} bs={cell['batch_size']}{spe}{random}"
