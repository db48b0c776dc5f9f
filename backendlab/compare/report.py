"""The compare report as a terminal table, ``report.md`` and ``loss_curves.png``, all drawn from a CompareReport."""

from __future__ import annotations

import io
from pathlib import Path

from rich.table import Table

from backendlab.backends import REFERENCE_BACKENDS
from backendlab.compare.floor import WINDOW as FLOOR_WINDOW
from backendlab.compare.known import DATA_PARALLEL, by_id
from backendlab.compare.results import AGREE_ROUNDING, STATISTICAL_MARKS
from backendlab.compare.verdict import QUANTITIES
from backendlab.export.formats import FORMATS as EXPORT_FORMATS
from backendlab.init import NOTE_NAMES
from backendlab.results import atomic_write_bytes, atomic_write_text
from backendlab.text import plural

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


def criterion_words(c) -> str:
    """``exact; dtype policy mixed_bfloat16, bfloat16 compute: the bfloat16 defaults``"""
    policy = f"dtype policy {c.dtype_policy}" if c.dtype_policy else "no dtype policy reported"
    if c.dtype_policy != c.compute_dtype:
        policy += f", {c.compute_dtype} compute"
    return f"{c.kind}; {policy}: {c.source}"


def criterion_text(report) -> str:
    """The tolerances and why those: ``rtol=0.016 atol=0.01 (exact; dtype policy ...: the bfloat16 defaults)``."""
    c = report.criterion
    return f"rtol={c.rtol:g} atol={c.atol:g} ({criterion_words(c)})"


def _optimizer_text(optimizer: dict) -> str:
    """``Adam (learning_rate=0.005, amsgrad=True)``; a wrapping LossScaleOptimizer named around it."""
    settings = ", ".join(f"{k}={_setting(v)}" for k, v in optimizer.items() if k not in ("class", "wrapped_by"))
    named = optimizer["class"] + (f" ({settings})" if settings else "")
    return f"{optimizer['wrapped_by']}({named})" if optimizer.get("wrapped_by") else named


def _setting(value) -> str:
    return format(value, "g") if isinstance(value, float) else str(value)


def _loss_text(loss) -> str:
    """``binary_crossentropy``; per output ``y1: mse, y2: sparse_categorical_crossentropy``."""
    if isinstance(loss, dict):
        return ", ".join(f"{name}: {_loss_text(value)}" for name, value in loss.items())
    if isinstance(loss, list):
        return ", ".join(_loss_text(value) for value in loss)
    return str(loss)


def _per_backend(values: dict, word=str) -> str:
    """One value for all (``fit``), or each backend's (``jax on, tensorflow off``)."""
    if len(set(values.values())) == 1:
        return word(next(iter(values.values())))
    return ", ".join(f"{backend} {word(value)}" for backend, value in values.items())


def ran_text(report) -> str:
    """What really ran, as the workers reported it: the model's compile, batches, dtype policy,
    devices and processes, the loop and ``jit_compile`` on each backend."""
    r = report.ran
    if not r:
        s = report.settings
        return f"nothing trained (asked: batch {s['batch_size']}, optimizer {s['optimizer'] or 'sgd'})"
    batch = f"batch {r['batch_size']}"
    if r["last_batch_size"] != r["batch_size"]:
        batch += f" (the last {r['last_batch_size']})"
    batch += f", {plural(r['steps_per_epoch'], 'step')} an epoch"
    if r.get("compiled_steps_per_execution", 1) > 1:
        batch += f", one per call (compiled with steps_per_execution={r['compiled_steps_per_execution']})"
    where = f"{r['devices']} device{'s' if r['devices'] > 1 else ''}"
    where += f", {r['processes']} process{'es' if r['processes'] > 1 else ''}"
    loop = _per_backend(r["loop"], lambda v: "fit" if v == "fit" else "custom loop")
    jit = _per_backend(r["jit_compile"], lambda v: "on" if v else "off")
    return (
        f"optimizer {_optimizer_text(r['optimizer'])}, loss {_loss_text(r['loss'])}; {batch}; "
        f"dtype policy {r['dtype_policy']}; {where}; {loop}, jit_compile {jit}"
    )


def terminal_table(report) -> Table:
    s = report.settings
    table = Table(
        title=f"compare: {s['model']} on {s['data']}, {plural(s['epochs'], 'epoch')}, batch {s['batch_size']}; "
        f"reference {report.reference}; {criterion_text(report)}",
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


def _loaders(report) -> list[str]:
    """The portability matrix's columns: the backends, then the reference-only ones, then the export formats."""
    return sorted(
        {loader for row in report.portability.values() for loader in row},
        key=lambda n: (n in EXPORT_FORMATS, n in REFERENCE_BACKENDS, n),
    )


def _cell_reasons(c: dict) -> list[str]:
    """What a cell says about why something did not work: its own failure, a failed export's own route, and the
    other routes tried."""
    reasons = [c["message"]] if c.get("status") not in (None, "agree", "diverge") and c.get("message") else []
    reasons += [c["own_failure"]] if c.get("own_failure") else []
    return reasons + list((c.get("tried") or {}).values())


def _cell_notes(report) -> dict[str, int]:
    """Each distinct reason a portability cell gives (why it could not load, or failed), numbered in the
    table's order: the table and the verdict lines cite it as ``[n]``, and it is written out once."""
    notes: dict[str, int] = {}
    for row in report.portability.values():
        for loader in _loaders(report):
            for reason in _cell_reasons(row.get(loader, {})):
                notes.setdefault(reason, len(notes) + 1)
    return notes


def _cell(c: dict, notes: dict[str, int]) -> str:
    """``agree (1.19e-07)``, ``agree (1.19e-07) via tensorflow [2]`` (why not on its own backend), ``could not
    load [1]``, ``failed [3]; tried tensorflow [4]``."""
    status = c.get("status", "-")
    text = f"{status} ({_fmt(c['max_abs'])})" if status in ("agree", "diverge") else status
    if c.get("message") in notes and status not in ("agree", "diverge"):
        text += f" [{notes[c['message']]}]"
    if c.get("route"):
        text += f" via {c['route']}" + (f" [{notes[c['own_failure']]}]" if c.get("own_failure") in notes else "")
    tried = c.get("tried") or {}
    return text + ("; tried " + ", ".join(f"{b} [{notes[m]}]" for b, m in tried.items()) if tried else "")


def portability_lines(report) -> list[str]:
    """The portability matrix, then each reason a cell gives, once, however many cells share it."""
    if not report.portability:
        return []
    loaders, notes = _loaders(report), _cell_notes(report)
    lines = ["| saved on \\ loaded on | " + " | ".join(loaders) + " |", "|---|" + "---|" * len(loaders)]
    for saver, row in report.portability.items():
        lines.append(f"| {saver} | " + " | ".join(_cell(row.get(loader, {}), notes) for loader in loaders) + " |")
    return lines + ([""] + [f"[{n}] {message}" for message, n in notes.items()] if notes else [])


def portability_line(report) -> str:
    """The saved models' verdict, apart from training's: how many of the loads ended how, citing the reasons."""
    if report.portability_verdict is None:
        return ""
    notes = _cell_notes(report)
    cells = [
        c
        for row in report.portability.values()
        for loader, c in row.items()
        if loader not in EXPORT_FORMATS and loader not in REFERENCE_BACKENDS
    ]
    counts: dict[str, list[dict]] = {}
    for c in cells:
        counts.setdefault(c["status"], []).append(c)
    parts = []
    for status, group in counts.items():
        cited = sorted({notes[c["message"]] for c in group if c.get("message") in notes})
        parts.append(f"{len(group)} of {len(cells)} {status}" + "".join(f" [{n}]" for n in cited))
    what = "each backend's .keras file loaded on each backend"
    return f"portability: {report.portability_verdict.upper()} ({what}: {', '.join(parts)})"


#: What a probe took apart, where it was not a training step.
TAKEN_APART = {
    "evaluate": "evaluation of the test set",
    "predict": "prediction of the test set",
    DATA_PARALLEL: "data-parallel training",
}


def _where(d: dict) -> str:
    """``step 3 first differs in update of embedding (Embedding), ...: <explanation>``, or why nowhere."""
    what = TAKEN_APART.get(d.get("during", "training"), f"step {d['step']}")
    known = by_id(d.get("known"))
    also = f"; {known.describe()}" if known else ""
    if not d["phase"]:
        return f"{what}: {d['explanation']}{also}"
    where = d["phase"] + (f" of {d['layer']} ({d['layer_class']})" if d.get("layer") else "")
    where += f", {d['variable']}" if d.get("variable") and d["variable"] != d.get("layer") else ""
    return f"{what} first differs in {where}: {d['explanation']}{also}"


def divergence_lines(report) -> list[str]:
    """One line per located backend: the step taken apart, and where in it (or why nowhere) it parts."""
    return [f"{name}: {_where(r.divergence)}" for name, r in report.backends.items() if r.divergence]


def _divergence_markdown(report) -> list[str]:
    located = [r for r in report.backends.values() if r.divergence]
    if not located:
        return []
    lines = ["", "## Where it first differs", ""]
    if any(r.divergence.get("during") == DATA_PARALLEL for r in located):
        lines.append(
            "This run trained on several devices or processes, where no step is taken apart (a probe runs one "
            "device's step): what differs is looked up in the catalog of known differences by the model alone."
        )
    else:
        lines.append(
            f"Each step below was taken apart on {report.reference} and on the backend, both starting it from the "
            "same replayed state: each layer's output (forward), the loss terms, every gradient, what one optimizer "
            "step changes (update), and the non-trainable changes (state). The first phase and place that differs "
            "while everything before it agrees is named."
        )
    if any(r.divergence.get("during", "training") not in ("training", DATA_PARALLEL) for r in located):
        lines[-1] += (
            f" Where training agrees and only evaluation or prediction differs, both load {report.reference}'s "
            "trained weights and evaluate the test set as `evaluate` does: each layer's output in inference "
            "(the forward pass `predict` runs too), the loss and the metrics."
        )
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


def odd_line(report) -> str:
    """Which backend differs from all the others, where one does: ``jax is the odd one out: ...``."""
    return report.odd_one_out.get("message", "")


def export_line(report) -> str:
    """The exports' verdict, apart from training's, with each export that did not agree or took another route."""
    if report.export_verdict is None:
        return ""
    notes = _cell_notes(report)
    told = [
        f"{saver} as {fmt}: {_cell(cell, notes)}"
        for saver, row in report.portability.items()
        for fmt, cell in row.items()
        if fmt in EXPORT_FORMATS and (cell["status"] != "agree" or cell.get("route"))
    ]
    return f"exports: {report.export_verdict.upper()}" + ("; " + "; ".join(told) if told else "")


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


def kept_sentence(report) -> str:
    """The variables the portable start kept as the model's build left them (adapted, loaded), or ''."""
    kept = (report.start or {}).get("kept") or []
    if not kept:
        return ""
    names = ", ".join(f"`{path}`" for path in kept[:NOTE_NAMES])
    if len(kept) > NOTE_NAMES:
        names += f" and {len(kept) - NOTE_NAMES} more"
    return f" Values the model's build set rather than drew at random were kept: {names}."


def renderables(report) -> list:
    """What ``backendlab compare`` prints once the run is over, in order: lines, and the table as rich draws it."""
    shown: list = [batches_line(report)] if report.batches else []
    shown += [f"ran: {ran_text(report)}", terminal_table(report), *portability_lines(report)]
    shown += [f"{r.backend}: {r.message}" for r in report.backends.values() if r.message]
    shown += [f"note: {note}" for note in report.notes]
    shown += [odd_line(report)] if report.odd_one_out else []
    shown += [*floor_lines(report), *divergence_lines(report)]
    shown += [line for line in (portability_line(report), export_line(report)) if line]
    return [*shown, timing_line(report)]


def stochastic_line(report) -> str:
    """``Stochastic layers (--random portable): `dropout` portable, `noise` outside Keras (statistical)``"""
    marked = ", ".join(
        f"`{name}` {mark}" + (" (statistical)" if mark in STATISTICAL_MARKS else "")
        for name, mark in report.stochastic_marks.items()
    )
    return f"Stochastic layers (--random {report.random}): {marked}"


def markdown(report) -> str:
    s = report.settings
    c = report.criterion
    lines = [
        f"# backendlab compare: {report.verdict.upper()}",
        "",
        f"Model `{s['model']}` on `{s['data']}`: {plural(s['epochs'], 'epoch')}, seed {s['seed']}; "
        f"keras {report.keras_version}. Reference backend: {report.reference}.",
        "",
        f"What ran: {ran_text(report)}.",
        "",
        f"Tolerance: |a - ref| <= {c.atol:g} + {c.rtol:g} * |ref| ({criterion_words(c)}).",
        "",
        "Every backend started from the same weights (checksums below)." + kept_sentence(report),
        "",
    ]
    if report.stochastic_marks:
        lines += [stochastic_line(report) + ".", ""]
    if report.odd_one_out:
        lines += [f"**{odd_line(report)}.**", ""]
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
            "(TensorFlow's SavedModel loader, onnxruntime) on one row and on every row. The saved models and "
            "the exports each have their own verdict and do not decide training's.",
            "",
        ]
        lines += [f"- {line}" if line.startswith("[") else line for line in portability_lines(report)]
        if report.portability_verdict:
            lines += ["", portability_line(report).replace("portability: ", "Portability: ", 1)]
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
    import numpy as np
    from matplotlib.figure import Figure  # not pyplot: drawing must not change a notebook's matplotlib backend

    # NaN and inf are left out of the lines (matplotlib draws gaps there); where a run went non-finite is marked.
    runs = {b: np.asarray(_floats(r.step_losses), float) for b, r in report.backends.items() if r.step_losses}
    if not runs:
        return None
    fig = Figure(figsize=(9, 6.5))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
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
        c = report.criterion
        finite = np.abs(ref[np.isfinite(ref)])
        if finite.size:
            bottom.axhline(
                c.atol + c.rtol * float(finite.mean()),
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
    return buffer.getvalue()


def write_outputs(report, out: Path) -> None:
    atomic_write_text(out / "report.md", markdown(report))
    png = loss_curves_png(report)
    if png is not None:
        atomic_write_bytes(out / "loss_curves.png", png)
