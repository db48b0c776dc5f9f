"""tune's terminal table, ``tune.md``, ``tune.png`` and the snippets, all drawn from a TuneReport."""

from __future__ import annotations

import io
from pathlib import Path

from rich.table import Table

from backendlab.backends import BACKENDS
from backendlab.compare.floor import FACTOR
from backendlab.results import atomic_write_bytes, atomic_write_text, write_json
from backendlab.text import plural
from backendlab.tune.grid import WHOLE_STEP, Setting
from backendlab.tune.results import WITHIN_ROUNDING, Profile, TuneReport, TuneRow

#: Below this fraction of its native loop, a backend's best gets a per-step profile in tune.md.
NATIVE_GOAL = 0.9

HEADERS = (
    "backend",
    "model",
    "batch",
    "setting",
    "threads",
    "samples/s (median)",
    "min-max",
    "vs default",
    "keras/native",
    "first step s",
    "RSS MB",
    "parity",
)


def machine_line(report: TuneReport) -> str:
    m = report.machine
    versions = ", ".join(f"{k} {v}" for k, v in m.frameworks.items())
    return f"{m.cpu}, {m.cores} cores; Python {m.python}, Keras {m.keras}, {versions}"


def _num(value, fmt: str = "{:,.0f}") -> str:
    return "" if value is None else fmt.format(value)


def snippet(backend: str, setting: Setting) -> str:
    """Ready-to-paste code that trains with ``setting`` on ``backend``."""
    lines = []
    if setting.intra_threads is not None or setting.inter_threads is not None:
        lines += (
            BACKENDS[backend]
            .threads_snippet.format(intra=setting.intra_threads or 0, inter=setting.inter_threads or 0)
            .splitlines()
        )
    if setting.dtype_policy != "float32":
        lines.append(f'keras.config.set_dtype_policy("{setting.dtype_policy}")  # before building the model')
    if setting.loop in ("fit", WHOLE_STEP):
        options = [f"jit_compile={setting.jit_compile}"]
        if setting.steps_per_execution > 1:
            options.append(f"steps_per_execution={setting.steps_per_execution}")
        compiled = f"model.compile(optimizer=optimizer, loss=loss, {', '.join(options)})"
        if setting.loop == "fit":
            lines.append(compiled)
        else:
            lines += [
                "from backendlab import whole_step_fit",
                "",
                compiled,
                "with whole_step_fit(model):  # the whole step in one compiled graph, for this model",
                "    model.fit(x, y, batch_size=batch_size)",
            ]
    else:
        lines += [
            "from backendlab import TrainStep",
            "",
            f"step = TrainStep(model, loss, optimizer, jit_compile={setting.jit_compile})",
            "losses = step.run_batches(batches)  # [(x, y), ...]; read a loss back only when you need it",
        ]
    return "\n".join(lines)


def parity_cell(row: TuneRow) -> str:
    if row.parity is None:
        return ""
    if row.parity.verdict == WITHIN_ROUNDING:
        return f"{WITHIN_ROUNDING} ({row.parity.floor_ratio:.2g}x floor)"
    if row.parity.verdict in ("same", "differs") and row.parity.predictions_max_rel is not None:
        p = row.parity
        weights = (p.weights_max_rel or 0) if p.weights_judged else 0
        worst = max(p.loss_max_rel or 0, p.predictions_max_rel or 0, weights)
        floor = "" if p.floor_ratio is None else f", {p.floor_ratio:.2g}x floor"
        return f"{p.verdict} ({worst:.1e}{floor})"
    return row.parity.verdict


def row_cells(row: TuneRow) -> list[str]:
    head = [row.backend, row.model, str(row.batch_size), row.label + (" (default)" if row.is_default else "")]
    head.append(_num(row.threads, "{}"))  # what the framework ran, where the setting left it its own
    if not row.ok:
        return head + [row.status.replace("_", " "), row.note] + [""] * (len(HEADERS) - len(head) - 2)
    return head + [
        _num(row.samples_per_sec),
        f"{_num(row.samples_per_sec_min)}-{_num(row.samples_per_sec_max)}",
        _num(row.speedup_vs_default, "{:.2f}x"),
        _num(row.native_ratio, "{:.2f}"),
        _num(row.first_step_s, "{:.2f}"),
        _num(row.peak_rss_mb),
        parity_cell(row),
    ]


def ranking(report: TuneReport) -> list[str]:
    """Per model and batch size, the backends by their best setting's samples/s."""
    lines = []
    for model, batch in dict.fromkeys((b.model, b.batch_size) for b in report.best):
        ranked = sorted(
            (b for b in report.best if (b.model, b.batch_size) == (model, batch)), key=lambda b: -b.samples_per_sec
        )
        order = ", ".join(f"{i}. {b.backend} {b.samples_per_sec:,.0f}/s ({b.label})" for i, b in enumerate(ranked, 1))
        lines.append(f"{model} at batch {batch}: {order}")
    return lines


def rich_table(report: TuneReport) -> Table:
    table = Table(title="backendlab tune", caption=machine_line(report), padding=(0, 1))
    keep = (
        "backend",
        "model",
        "batch",
        "setting",
        "threads",
        "samples/s (median)",
        "vs default",
        "keras/native",
        "parity",
    )
    for header in keep:
        table.add_column(header, justify="left" if header in keep[:4] else "right", no_wrap=header != "setting")
    for row in report.rows:
        cells = dict(zip(HEADERS, row_cells(row)))
        style = "bold" if any(_is_best(row, b) for b in report.best) else (None if row.ok else "dim")
        table.add_row(*[cells[h] for h in keep], style=style)
    return table


def _is_best(row: TuneRow, best) -> bool:
    return (row.backend, row.model, row.batch_size, row.settings) == (
        best.backend,
        best.model,
        best.batch_size,
        best.settings,
    )


def renderables(report: TuneReport) -> list:
    """What ``backendlab tune`` prints once done (its ``__repr__``, and its HTML in Jupyter)."""
    from backendlab.display import summary

    return summary(rich_table(report), notes(report), report.failures)


def notes(report: TuneReport) -> list[str]:
    """Why rows are not ok or lost parity, once per distinct reason; then the ranking."""
    return reasons(report) + ranking(report)


def reasons(report: TuneReport) -> list[str]:
    """Why rows are not ok or lost parity, once per distinct reason."""
    found: dict[str, list[str]] = {}
    for row in report.rows:
        if not row.ok:
            found.setdefault(f"{row.status.replace('_', ' ')}: {row.note}", []).append(f"{row.backend} {row.label}")
        elif row.parity and row.parity.verdict == "differs":
            found.setdefault(f"parity lost: {row.parity.message}", []).append(f"{row.backend} {row.label}")
        elif row.parity and row.parity.verdict == WITHIN_ROUNDING:
            found.setdefault(f"parity kept: {row.parity.message}", []).append(f"{row.backend} {row.label}")
    return [f"{reason} ({'; '.join(where)})" for reason, where in found.items()]


def profile_table(profiles: list[Profile], best: list) -> list[str]:
    head = (
        "| backend | model | batch | forward | less native forward | loss + backward | optimizer | metrics | "
        "host sync | native forward | native step | best setting's step |"
    )
    lines = [head, "|" + "|".join("---" for _ in range(12)) + "|"]
    for p in profiles:
        won = next((b for b in best if (b.backend, b.model, b.batch_size) == (p.backend, p.model, p.batch_size)), None)
        step = 1000 * p.batch_size / won.samples_per_sec if won else None
        lines.append(
            f"| {p.backend} | {p.model} | {p.batch_size} | {p.forward_ms:.2f} | {_num(p.layer_call_ms, '{:+.2f}')} | "
            f"{p.loss_and_backward_ms:.2f} | {p.optimizer_ms:.2f} | {p.metrics_ms:.2f} | {p.host_sync_ms:.3f} | "
            f"{_num(p.native_forward_ms, '{:.2f}')} | {_num(p.native_step_ms, '{:.2f}')} | {_num(step, '{:.2f}')} |"
        )
    return lines


def shortfall(best, profiles: list[Profile]) -> str | None:
    """One sentence, from the profile, on why ``best`` stays below the native loop: its step against the
    native step, and the phases, largest first, with the Keras forward pass's excess over the native one."""
    p = next(
        (p for p in profiles if (p.backend, p.model, p.batch_size) == (best.backend, best.model, best.batch_size)), None
    )
    if p is None or best.native_ratio is None:
        return None
    step = 1000 * best.batch_size / best.samples_per_sec
    native_step = step * best.native_ratio  # the native loop's own timed run, as in keras/native
    phases = {
        "loss and backward": p.loss_and_backward_ms,
        "forward": p.forward_ms,
        "optimizer": p.optimizer_ms,
        "metrics": p.metrics_ms,
        "host sync": p.host_sync_ms,
    }
    listed = ", ".join(f"{name} {ms:.2f}" for name, ms in sorted(phases.items(), key=lambda kv: -kv[1]))
    line = (
        f"{best.backend} {best.model} batch {best.batch_size}: the best setting's step takes {step:.2f} ms "
        f"against the native loop's {native_step:.2f} ms; timed alone, its phases take (ms) {listed}"
    )
    if best.settings.get("jit_compile") is True:
        # The phases are timed as the backend dispatches them eagerly (PyTorch) or each compiled alone:
        # a step compiled whole does not call the layers one by one, so they do not name its cause.
        return line + "; the best setting compiles its whole step, which these phases, timed alone, do not time."
    if p.layer_call_ms is not None:
        line += (
            f"; the Keras forward pass takes {p.layer_call_ms:+.2f} ms against the native forward pass on the same "
            f"layers ({p.native_forward_ms:.2f} ms), the cost of calling through Keras's layers"
        )
    return line + "."


def markdown_report(report: TuneReport) -> str:
    tol = ", ".join(f"{k} rtol {v[0]:g} atol {v[1]:g}" for k, v in report.tolerances.items())
    parts = [
        "# backendlab tune",
        "",
        f"Machine: {machine_line(report)}.",
        "",
        f"Each setting trains {plural(report.parity_steps, 'step')} from the same starting weights on the same "
        "batches as its backend's default settings (`model.compile()` as it comes). **Parity** compares the "
        "epoch's loss, the "
        "predictions on the first batch and every weight after them, each number within the setting's dtype "
        f"tolerance ({tol}), as `|a - r| <= atol + rtol |r|` (the predictions: `atol + rtol max|r|`, since a logit "
        "near zero carries the rounding of its whole sum); the largest relative difference is in brackets "
        "(for the predictions, relative to max|r|). "
        "A float32 setting outside it is held to the model's noise floor, as `backendlab compare` holds a backend: "
        "the default settings trained again with every weight moved by 1 ulp before each step; no further from the "
        "default than "
        f"{FACTOR:g}x that floor at every step and in every quantity, it is *{WITHIN_ROUNDING}* and kept (its worst "
        "ratio to the floor in brackets). "
        "Mixed precision is judged on the loss and predictions: its weights are reported in tune.json, not judged, "
        "since an Adam update that rounds the other way moves a weight by a whole learning rate. "
        "Samples/s is the median of the timed repeats (min-max beside it), after warm-up.",
        "",
        "## Best setting that keeps parity",
        "",
        "| backend | model | batch | setting | samples/s | vs default | keras/native | parity |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for b in report.best:
        parts.append(
            f"| {b.backend} | {b.model} | {b.batch_size} | {b.label} | {b.samples_per_sec:,.0f} | "
            f"{_num(b.speedup_vs_default, '{:.2f}x')} | {_num(b.native_ratio, '{:.2f}')} | {b.parity} |"
        )
    parts += ["", "Ranking:", ""] + [f"- {line}" for line in ranking(report)]
    for b in report.best:
        parts += ["", f"### {b.backend}, {b.model}, batch {b.batch_size}: {b.label}", "", "```python", b.snippet, "```"]
    short = [b for b in report.best if b.native_ratio is not None and b.native_ratio < NATIVE_GOAL]
    if report.profiles:
        parts += [
            "",
            "## Per-step profile",
            "",
            "Milliseconds per step, median, each phase of a step timed alone on one batch the way the backend "
            "runs it (JAX: each phase its own `jax.jit`; TensorFlow: its own `tf.function`; PyTorch: eager), so "
            "they need not add up to a step. *Less native forward* is the Keras forward pass less the native "
            "loop's forward pass on the same layers: what calling through Keras's layers costs. The last column "
            "is the best setting's whole step, for comparison with the native step.",
        ]
        if short:
            names = ", ".join(f"{b.backend} {b.model} batch {b.batch_size} ({b.native_ratio:.2f})" for b in short)
            parts += ["", f"Below {NATIVE_GOAL}x the native loop: {names}."]
        parts += [""] + profile_table(report.profiles, report.best)
        why = [line for b in short if (line := shortfall(b, report.profiles))]
        if why:
            parts += ["", "Where the time goes in those:", ""] + [f"- {line}" for line in why]
    parts += [
        "",
        "## Every setting tried",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "|".join("---" for _ in HEADERS) + "|",
    ]
    parts += ["| " + " | ".join(c.replace("|", "/") for c in row_cells(r)) + " |" for r in report.rows]
    if reasons(report):
        parts += ["", "Notes:", ""] + [f"- {line}" for line in reasons(report)]
    for failure in report.failures:
        parts += ["", f"**{failure.backend}: worker {failure.status}**: {failure.message}"]
    if report.wall_s is not None:
        parts += ["", f"Run took {report.wall_s:.0f} s."]
    return "\n".join(parts) + "\n"


def plot_png(report: TuneReport, file) -> None:
    """One bar per setting tried, grouped by backend; the winner outlined; one panel per model and batch size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = list(dict.fromkeys((r.model, r.batch_size) for r in report.rows)) or [("", 0)]
    fig, axes = plt.subplots(len(cells), 1, figsize=(10, 3.8 * len(cells)), squeeze=False)
    for ax, (model, batch) in zip(axes[:, 0], cells):
        rows = [r for r in report.rows if (r.model, r.batch_size) == (model, batch) and r.ok]
        backends = list(dict.fromkeys(r.backend for r in rows))
        labels, values, colors, edges = [], [], [], []
        for i, backend in enumerate(backends):
            for r in (r for r in rows if r.backend == backend):
                labels.append(f"{backend}\n{r.label}")
                values.append(r.samples_per_sec)
                kept = r.parity is not None and r.parity.kept
                colors.append(f"C{i}" if kept else "lightgrey")
                edges.append(3 if any(_is_best(r, b) for b in report.best) else 0.4)
        ax.bar(range(len(values)), values, color=colors, edgecolor="black", linewidth=edges)
        ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("samples/s (median)")
        ax.set_title(f"{model}, batch {batch} (grey: parity lost; thick edge: best kept)", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(file, format="png", dpi=100)
    plt.close(fig)


def write_outputs(report: TuneReport, out_dir: Path, json_path=None) -> None:
    write_json(out_dir / "tune.json", report.to_dict())
    if json_path:
        write_json(json_path, report.to_dict())
    atomic_write_text(out_dir / "tune.md", markdown_report(report))
    buffer = io.BytesIO()
    plot_png(report, buffer)
    atomic_write_bytes(out_dir / "tune.png", buffer.getvalue())
