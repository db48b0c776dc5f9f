"""The terminal table, ``bench.md`` and ``bench.png``, all drawn from a BenchReport."""

from __future__ import annotations

from rich.table import Table

from backendlab.bench.results import BenchReport, BenchRow

HEADERS = (
    "backend",
    "impl",
    "model",
    "mode",
    "batch",
    "settings",
    "samples/s (median)",
    "min-max",
    "ms/step",
    "first step s",
    "RSS MB",
    "GFLOP/s",
    "of peak",
    "keras/native",
    "input stall",
)


def _num(value, fmt: str = "{:,.0f}") -> str:
    return "" if value is None else fmt.format(value)


def row_cells(row: BenchRow) -> list[str]:
    head = [row.backend, row.impl, row.model, row.mode, str(row.batch_size), row.settings]
    if not row.ok:
        return head + [row.status.replace("_", " "), row.note] + [""] * (len(HEADERS) - len(head) - 2)
    return head + [
        _num(row.samples_per_sec),
        f"{_num(row.samples_per_sec_min)}-{_num(row.samples_per_sec_max)}",
        _num(row.ms_per_step, "{:.2f}"),
        _num(row.first_step_s, "{:.2f}"),
        _num(row.peak_rss_mb),
        _num(row.gflops_per_sec, "{:.1f}"),
        _num(row.fraction_of_peak and 100 * row.fraction_of_peak, "{:.1f}%" + ("*" if _over_peak(row) else "")),
        _num(row.native_ratio, "{:.2f}"),
        _num(None if row.input_stall is None else 100 * row.input_stall, "{:.1f}%"),
    ]


def _over_peak(row: BenchRow) -> bool:
    return row.fraction_of_peak is not None and row.fraction_of_peak > 1


def peak_note(report: BenchReport) -> str | None:
    """Why a row can run above "100% of peak": the matmul peak is measured, and this run measured it low."""
    over = [row.fraction_of_peak for row in report.rows if _over_peak(row)]
    if not over:
        return None
    peak = report.machine.matmul_peak_gflops
    return (
        f"* of peak above 100% (up to {100 * max(over):.1f}%): the peak was measured low this run "
        f"({peak:.0f} GFLOP/s, the best matmul of the run); those rows ran faster than it, not faster than the machine"
    )


def sorted_rows(report: BenchReport) -> list[BenchRow]:
    order = {m: i for i, m in enumerate(dict.fromkeys(r.model for r in report.rows))}
    return sorted(
        report.rows,
        key=lambda r: (order[r.model], r.mode, r.batch_size, r.backend, r.impl != "keras", r.steps_per_execution),
    )


def machine_line(report: BenchReport) -> str:
    m = report.machine
    peak = f"{m.matmul_peak_gflops:.0f} GFLOP/s" if m.matmul_peak_gflops else "not measured"
    versions = ", ".join(f"{k} {v}" for k, v in m.frameworks.items())
    return f"{m.cpu}, {m.cores} cores; float32 matmul peak {peak}; Python {m.python}, Keras {m.keras}, {versions}"


#: The terminal shows fewer columns than bench.md, so it fits 100 columns or so.
TERMINAL = {
    "backend": "backend",
    "impl": "impl",
    "model": "model",
    "mode": "mode",
    "batch": "batch",
    "settings": "settings",
    "samples/s (median)": "samples/s",
    "ms/step": "ms/step",
    "first step s": "1st s",
    "GFLOP/s": "GFLOP/s",
    "of peak": "peak",
    "keras/native": "k/n",
    "input stall": "stall",
}


def rich_table(report: BenchReport) -> Table:
    table = Table(title=f"backendlab bench ({report.preset})", caption=machine_line(report), padding=(0, 1))
    keep = [i for i, header in enumerate(HEADERS) if header in TERMINAL]
    for i in keep:
        table.add_column(TERMINAL[HEADERS[i]], justify="left" if i < 6 else "right", no_wrap=True)
    for row in sorted_rows(report):
        style = None if row.ok else ("dim" if row.status == "not_applicable" else "red")
        cells = row_cells(row)
        cells[5] = f"spe={row.steps_per_execution}" + ("" if row.pipeline == "arrays" else f" input={row.pipeline}")
        cells[5] += "" if row.random == "backend" else f" random={row.random}"
        if not row.ok:  # the reason goes below the table: see notes()
            cells[6], cells[7] = row.status.replace("_", " "), ""
        table.add_row(*[cells[i] for i in keep], style=style)
    return table


def renderables(report: BenchReport) -> list:
    """What ``backendlab bench`` prints once done (its ``__repr__``, and its HTML in Jupyter)."""
    from backendlab.display import summary

    return summary(rich_table(report), notes(report), report.failures)


def notes(report: BenchReport) -> list[str]:
    """Why rows are not ok, once per distinct reason; and why "of peak" is above 100%, where it is."""
    found: dict[str, list[str]] = {}
    for row in sorted_rows(report):
        if not row.ok:
            where = (
                f"{row.backend} {row.impl} {row.model} {row.mode} batch {row.batch_size} spe {row.steps_per_execution}"
            )
            found.setdefault(f"{row.status.replace('_', ' ')}: {row.note}", []).append(where)
    peak = peak_note(report)
    return [f"{reason} ({'; '.join(where)})" for reason, where in found.items()] + ([peak] if peak else [])


def markdown_table(report: BenchReport) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "|".join("---" for _ in HEADERS) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row_cells(row)) + " |" for row in sorted_rows(report)]
    return "\n".join(lines)


def markdown_report(report: BenchReport) -> str:
    m = report.machine
    peaks = ", ".join(f"{b} {p['gflops']:.0f} ({p['device']}, n={p['n']})" for b, p in m.matmul_peak_by_backend.items())
    parts = [
        f"# backendlab bench: {report.preset}",
        "",
        f"Machine: {machine_line(report)}.",
        f'Matmul peak per backend, GFLOP/s: {peaks or "none"}; "of peak" divides by the best of them.',
        "",
        f"FLOPs: {report.flop_convention}.",
        'Samples/s and ms/step are the median over the repeats; "keras/native" is the Keras row\'s '
        "samples/s over the native loop's on the same backend, model, mode and batch size.",
        "RSS is the worker's peak resident memory when the cell ended (one worker per backend runs all its cells).",
        '"input stall": for a fit row fed by a pipeline (settings input=KIND), the share of the step time spent '
        "waiting for the next batch (the pipeline's next() and the conversion to NumPy).",
        "",
        markdown_table(report),
    ]
    if peak_note(report):
        parts += ["", peak_note(report) + "."]
    for failure in report.failures:
        parts += ["", f"**{failure.backend}: worker {failure.status}**: {failure.message}"]
    if report.wall_s is not None:
        parts += ["", f"Run took {report.wall_s:.0f} s."]
    return "\n".join(parts) + "\n"


def plot_png(report: BenchReport, file) -> None:
    """Grouped bars, backends side by side per model; native loops hatched; one panel per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report.rows if r.ok and r.steps_per_execution == 1]
    modes = list(dict.fromkeys(r.mode for r in rows)) or ["fit"]
    series = list(dict.fromkeys((r.backend, r.impl) for r in sorted(rows, key=lambda r: (r.backend, r.impl))))
    fig, axes = plt.subplots(len(modes), 1, figsize=(max(6, 1.6 * len(series) + 4), 3.6 * len(modes)), squeeze=False)
    colors = {name: f"C{i}" for i, name in enumerate(dict.fromkeys(b for b, _ in series))}
    for ax, mode in zip(axes[:, 0], modes):
        in_mode = [r for r in rows if r.mode == mode]
        groups = list(dict.fromkeys((r.model, r.batch_size) for r in in_mode))
        width = 0.8 / max(1, len(series))
        for i, (backend, impl) in enumerate(series):
            values = {
                (r.model, r.batch_size): r.samples_per_sec
                for r in in_mode
                if r.backend == backend and r.impl == impl and r.jit_compile == first_jit(in_mode, backend, impl)
            }
            xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
            ax.bar(
                xs,
                [values.get(g, 0) for g in groups],
                width,
                color=colors[backend],
                hatch="//" if impl == "native" else None,
                edgecolor="black",
                linewidth=0.4,
                label=f"{backend} ({impl})",
            )
        ax.set_xticks(range(len(groups)), [f"{m}\nbatch {b}" for m, b in groups])
        ax.set_yscale("log")
        ax.set_ylabel("samples/s (median)")
        ax.set_title(f"{mode}")
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(fontsize=8, ncol=min(3, len(series)))
    fig.suptitle(f"backendlab bench ({report.preset}): {report.machine.cpu}, {report.machine.cores} cores", fontsize=10)
    fig.tight_layout()
    fig.savefig(file, format="png", dpi=110)
    plt.close(fig)


def first_jit(rows: list[BenchRow], backend: str, impl: str) -> str | None:
    """One jit setting per bar series: the first the run used."""
    return next((r.jit_compile for r in rows if r.backend == backend and r.impl == impl), None)
