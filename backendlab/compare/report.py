"""The compare report as a terminal table, ``report.md`` and ``loss_curves.png``, all drawn from a CompareReport."""

from __future__ import annotations

import io
from pathlib import Path

from rich.table import Table

from backendlab.backends import REFERENCE_BACKENDS
from backendlab.compare.floor import WINDOW as FLOOR_WINDOW
from backendlab.compare.known import by_id
from backendlab.compare.results import AGREE_ROUNDING
from backendlab.compare.verdict import QUANTITIES
from backendlab.export.formats import FORMATS as EXPORT_FORMATS
from backendlab.results import atomic_write_bytes, atomic_write_text

#: The quantities each view shows, in the registry's order.
TABLE = [q.name for q in QUANTITIES if q.table]
MARKDOWN = [q.name for q in QUANTITIES if q.markdown]


def _num(x, spec: str) -> str:
    """``x`` formatted by ``spec``: ``nan`` and ``inf`` as such, ``-`` for None (report.json's null), never an error."""
    if x is None:
        return "-"
    try:
        return format(float(x), spec)
    except (TypeError, ValueError):
        return str(x)


def _fmt(x, digits: int = 2) -> str:
    return _num(x, f".{digits}e")


def _floats(values) -> list[float]:
    """Numbers to plot; None (a NaN or inf read back from report.json) and anything else unreadable as NaN."""
    out = []
    for v in values:
        try:
            out.append(float("nan") if v is None else float(v))
        except (TypeError, ValueError):
            out.append(float("nan"))
    return out


def _rows(report, quantities: list[str]):
    """(backend, status, verdict, checksum, time, test metrics, [max_abs/max_rel per quantity], message)"""
    for r in report.backends.values():
        diffs = [
            f"{_fmt(r.differences[q].max_abs, 1)} / {_fmt(r.differences[q].max_rel, 1)}" if q in r.differences else "-"
            for q in quantities
        ]
        test = ", ".join(f"{k}={_num(v, '.4f')}" for k, v in r.test.items())
        time = _num(r.train_time_s, ".2f")
        time = time + "s" if time[-1].isdigit() else "-"  # none measured (or none finite): no time
        yield r.backend, r.status, r.verdict or "-", r.initial_checksum or "-", time, test, diffs, r.message


def terminal_table(report) -> Table:
    s = report.settings
    table = Table(
        title=f"compare: {s['model']} on {s['data']}, {s['epochs']} epochs, batch {s['batch_size']}; "
        f"reference {report.reference}; rtol={s['rtol']:g} atol={s['atol']:g} ({report.criterion})",
        caption=f"verdict: {report.verdict.upper()}    cells: largest absolute / relative difference to the reference",
    )
    for col in ("backend", "status", "verdict", "start checksum", "train time", *(q.replace("_", " ") for q in TABLE)):
        table.add_column(col, overflow="fold")
    for backend, status, verdict, checksum, time, _test, diffs, _msg in _rows(report, TABLE):
        style = {"agree": "green", AGREE_ROUNDING: "green", "diverge": "red"}.get(
            verdict, "yellow" if status != "ok" else ""
        )
        table.add_row(backend, status, f"[{style}]{verdict}[/]" if style else verdict, checksum[:8], time, *diffs)
    return table


def portability_lines(report) -> list[str]:
    if not report.portability:
        return []
    loaders = sorted(
        {loader for row in report.portability.values() for loader in row},
        key=lambda n: (n in EXPORT_FORMATS, n in REFERENCE_BACKENDS, n),
    )
    lines = ["| saved on \\ loaded on | " + " | ".join(loaders) + " |", "|---|" + "---|" * len(loaders)]
    for saver, row in report.portability.items():
        cells = []
        for loader in loaders:
            c = row.get(loader, {})
            if c.get("status") in ("agree", "diverge"):
                cells.append(f"{c['status']} ({_fmt(c['max_abs'])})")
            else:
                cells.append(f"{c.get('status', '-')}: {c.get('message', '')}".strip(": "))
        lines.append(f"| {saver} | " + " | ".join(cells) + " |")
    return lines


def _where(d: dict) -> str:
    """``step 3 first differs in update of embedding (Embedding), ...: <explanation>``, or why nowhere."""
    if not d["phase"]:
        return f"step {d['step']}: {d['explanation']}"
    where = d["phase"] + (f" of {d['layer']} ({d['layer_class']})" if d.get("layer") else "")
    where += f", {d['variable']}" if d.get("variable") and d["variable"] != d.get("layer") else ""
    known = by_id(d.get("known"))
    return f"step {d['step']} first differs in {where}: {d['explanation']}" + (f"; {known.describe()}" if known else "")


def divergence_lines(report) -> list[str]:
    """One line per located backend: the step taken apart, and where in it (or why nowhere) it parts."""
    return [f"{name}: {_where(r.divergence)}" for name, r in report.backends.items() if r.divergence]


def _divergence_markdown(report) -> list[str]:
    located = [r for r in report.backends.values() if r.divergence]
    if not located:
        return []
    lines = [
        "",
        "## Where it first differs",
        "",
        f"Each step below was taken apart on {report.reference} and on the backend, both starting it from the "
        "same replayed state: each layer's output (forward), the loss terms, every gradient, what one optimizer "
        "step changes (update), and the non-trainable changes (state). The first phase and place that differs "
        "while everything before it agrees is named.",
    ]
    for r in located:
        lines += ["", f"**{r.backend}**: {_where(r.divergence)}", ""]
        reached = r.divergence_layers.get("reached", [])
        missed = r.divergence_layers.get("not_reached", [])
        if reached or missed:
            lines.append(
                f"Layer outputs recorded: {len(reached)}"
                + (f"; not reachable by the probe: {', '.join(m['name'] for m in missed)}" if missed else "")
                + ".\n"
            )
        if r.divergence_phases:
            lines += ["| phase | arrays | largest abs | largest rel | where |", "|---|---|---|---|---|"]
            for row in r.divergence_phases:
                lines.append(
                    f"| {row['phase']} | {row['compared']} | {_fmt(row['max_abs'])} | {_fmt(row['max_rel'])} | "
                    f"{row['worst'] or '-'} |"
                )
    return lines


def export_line(report) -> str:
    """The exports' verdict, apart from training's, with each export that did not agree."""
    if report.export_verdict is None:
        return ""
    bad = [
        f"{saver} as {fmt}: {cell['status']}" + (f" ({cell['message']})" if cell.get("message") else "")
        for saver, row in report.portability.items()
        for fmt, cell in row.items()
        if fmt in EXPORT_FORMATS and cell["status"] != "agree"
    ]
    return f"exports: {report.export_verdict.upper()}" + ("; " + "; ".join(bad) if bad else "")


def timing_line(report) -> str:
    """Where the wall time went: imports (overlapping), training (one backend at a time), and the rest."""
    t = report.timing
    if not t:
        return ""
    imports = ", ".join(f"{b} {s:.1f}s" for b, s in t["import_s"].items())
    train = ", ".join(f"{b} {s:.1f}s" for b, s in t["train_s"].items())
    twins = t.get("twins_s") or {}
    floor = (
        f", the noise floor's twins {sum(twins.values()):.1f}s ({', '.join(f'{b} {s:.1f}s' for b, s in twins.items())})"
        if twins
        else ""
    )
    return (
        f"time: {t['wall_s']:.1f}s in all: {t['imports_wall_s']:.1f}s until every worker had imported its "
        f"framework ({imports}, overlapping), training {sum(t['train_s'].values()):.1f}s ({train}){floor}, "
        f"and {t['overhead_s']:.1f}s besides (building, predicting, saving, loading)"
    )


def floor_lines(report) -> list[str]:
    """Each backend's amplification, and how a backend outside the tolerance stands against the noise floor."""
    amplified = [f"{b} {_num(r.amplification, '.3g')}x" for b, r in report.backends.items() if r.amplification]
    lines = [f"amplification of a 1-ulp change of the start over training: {', '.join(amplified)}"] if amplified else []
    for name, r in report.backends.items():
        f = r.floor
        if f and f["worst_step"] is not None:
            losses = (
                f"its losses are at most {_num(f['worst_ratio'], '.3g')}x the noise floor from the reference "
                f"(step {f['worst_step']}"
                if f["worst_ratio"]
                else "its losses stay within the tolerance (no floor needed"
            )
            lines.append(
                f"{name}: {losses}; {f['twins']} perturbed twins per backend); within rounding up to "
                f"{f['factor']:g}x: " + ("yes" if f["within"] else "no")
            )
    return lines


def _floor_markdown(report) -> list[str]:
    """The noise floor's section: what it is, each backend's amplification, and per step its difference beside it."""
    judged = {b: r.floor for b, r in report.backends.items() if r.floor}
    if not judged:
        return []
    lines = [
        "",
        "## The noise floor",
        "",
        "Where a backend left the tolerance, perturbed twins of the shared start (every float weight moved by one "
        "unit in the last place, seeded; the same batches) trained on it and on the reference. A step's floor is "
        "the largest distance of a twin's loss from its own backend's unperturbed run, within "
        f"{FLOOR_WINDOW} steps of it. A backend agrees within rounding when, at every step and in every quantity "
        "outside the tolerance, it is no further from the reference than the stated factor times the floor.",
        "",
    ]
    lines += [f"- {line}" for line in floor_lines(report)]
    for name, f in judged.items():
        lines += ["", f"**{name}**, per quantity: difference to {report.reference} / floor", ""]
        lines += ["| quantity | difference | floor | within |", "|---|---|---|---|"]
        lines += [
            f"| {q} | {_fmt(v['difference'])} | {_fmt(v['floor'])} | {'yes' if v['within'] else 'no'} |"
            for q, v in f["quantities"].items()
        ]
        lines += [
            "",
            f"<details><summary>{name}: per step, |loss - {report.reference}'s| and the floor</summary>",
            "",
            "| step | difference | floor | ratio |",
            "|---|---|---|---|",
        ]
        for step, (d, fl) in enumerate(zip(f["step_difference"], f["step_floor"], strict=True), start=1):
            ratio = d / fl if d is not None and fl else None
            lines.append(f"| {step} | {_fmt(d)} | {_fmt(fl)} | {_num(ratio, '.3g')} |")
        lines += ["", "</details>"]
    return lines


def batches_line(report) -> str:
    """Whether every backend was fed the same batches: said before any verdict on the model."""
    b = report.batches
    return f"batches: {'identical' if b['identical'] else 'NOT IDENTICAL'}: {b['message']}"


def markdown(report) -> str:
    s = report.settings
    lines = [
        f"# backendlab compare: {report.verdict.upper()}",
        "",
        f"Model `{s['model']}` on `{s['data']}`: {s['epochs']} epochs, batch size {s['batch_size']}, "
        f"optimizer {s['optimizer'] or 'sgd (momentum 0.9, Nesterov)'}, seed {s['seed']}; "
        f"keras {report.keras_version}. Reference backend: {report.reference}. "
        f"Tolerance: |a - ref| <= {s['atol']:g} + {s['rtol']:g} * |ref| ({report.criterion} comparison).",
        "",
        "Every backend started from the same weights (checksums below).",
        "",
    ]
    if report.batches:
        lines += [batches_line(report).replace("batches: ", "Batches: ", 1) + ".", ""]
    lines += [f"> {note}" for note in report.notes] + ([""] if report.notes else [])
    lines += [
        "| backend | status | verdict | start checksum | train time | test | "
        + " | ".join(f"{q} (abs / rel)" for q in MARKDOWN)
        + " |",
        "|---" * (6 + len(MARKDOWN)) + "|",
    ]
    for backend, status, verdict, checksum, time, test, diffs, _msg in _rows(report, MARKDOWN):
        lines.append(
            f"| {backend} | {status} | {verdict} | `{checksum}` | {time} | {test} | " + " | ".join(diffs) + " |"
        )
    if report.timing:
        lines += ["", timing_line(report).replace("time: ", "Time: ", 1) + "."]
    messages = [(r.backend, r.message) for r in report.backends.values() if r.message]
    if messages:
        lines += ["", "## What went wrong or differs", ""] + [f"- **{b}**: {m}" for b, m in messages]
    lines += _floor_markdown(report)
    lines += _divergence_markdown(report)
    if report.portability:
        lines += [
            "",
            "## Portability: each backend's `.keras` file loaded on every backend, and its exports",
            "",
            "Predictions on the test set against the saving backend's own (largest absolute difference). "
            "Export columns: the model exported with Keras's `model.export` and run in the format's own runtime "
            "(TensorFlow's SavedModel loader, onnxruntime) on one row and on every row; they have their own "
            "verdict and do not decide training's.",
            "",
        ]
        lines += portability_lines(report)
        if report.export_verdict:
            lines += ["", export_line(report).replace("exports: ", "Exports: ", 1)]
    if report.numpy_reference:
        lines += ["", "## Keras's numpy backend as an independent reference for the starting predictions", ""]
        for backend, cell in report.numpy_reference.items():
            lines.append(
                f"- {cell['message']}"
                if backend == "_unavailable"
                else f"- {backend}: {cell['status']} (largest absolute difference {_fmt(cell['max_abs'])})"
            )
    tails = [(r.backend, r.log_tail) for r in report.backends.values() if r.log_tail]
    for backend, tail in tails:
        lines += ["", f"## {backend}: the end of its worker's output", "", "```", tail, "```"]
    lines += ["", "![per-step losses](loss_curves.png)", ""]
    return "\n".join(lines)


def loss_curves_png(report) -> bytes | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    # NaN and inf are left out of the lines (matplotlib draws gaps there); where a run went non-finite is marked.
    runs = {b: np.asarray(_floats(r.step_losses), float) for b, r in report.backends.items() if r.step_losses}
    if not runs:
        return None
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    styles = ["-", "--", ":", "-."]
    for i, (backend, losses) in enumerate(runs.items()):
        shown = np.where(np.isfinite(losses), losses, np.nan)
        marker = "." if len(losses) < 50 else None  # a short run cut by a NaN may have no two points to join
        top.plot(np.arange(1, len(losses) + 1), shown, styles[i % 4], marker=marker, label=backend, linewidth=1.4)
        step = report.backends[backend].nonfinite_step
        if step is not None:
            top.axvline(step, color="red", linestyle=styles[i % 4], linewidth=0.8, label=f"{backend}: non-finite")
    top.set_ylabel("training loss (per batch)")
    top.set_title(f"{report.settings['model']} on {report.settings['data']}: {report.verdict}")
    top.legend()
    ref = runs.get(report.reference)
    if ref is not None:
        for i, (backend, losses) in enumerate(runs.items()):
            if backend == report.reference:
                continue
            n = min(len(ref), len(losses))
            with np.errstate(invalid="ignore"):
                gap = np.abs(losses[:n] - ref[:n])
            gap = np.where(np.isfinite(gap), np.maximum(gap, 1e-12), np.nan)
            line = bottom.semilogy(np.arange(1, n + 1), gap, styles[i % 4], label=f"|{backend} - {report.reference}|")
            judged = report.backends[backend].floor
            if judged:
                allowed = judged["factor"] * np.asarray(_floats(judged["step_floor"]), float)
                bottom.semilogy(
                    np.arange(1, allowed.size + 1),
                    np.where(allowed > 0, allowed, np.nan),
                    color=line[0].get_color(),
                    linewidth=0.8,
                    alpha=0.6,
                    label=f"{judged['factor']:g}x noise floor ({backend}, {report.reference})",
                )
        s = report.settings
        finite = np.abs(ref[np.isfinite(ref)])
        if finite.size:
            bottom.axhline(
                s["atol"] + s["rtol"] * float(finite.mean()),
                color="grey",
                linewidth=0.8,
                label="tolerance (at mean loss)",
            )
        bottom.set_ylabel("difference to reference")
        bottom.legend(fontsize=8)
    bottom.set_xlabel("step")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def write_outputs(report, out: Path) -> None:
    atomic_write_text(out / "report.md", markdown(report))
    png = loss_curves_png(report)
    if png is not None:
        atomic_write_bytes(out / "loss_curves.png", png)
