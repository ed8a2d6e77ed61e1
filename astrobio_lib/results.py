"""A run's answer in numbers: what ``index.html``'s results panel, ``<run>/results.json`` and the
README's results section show — all read from the files the run itself wrote (verdicts, training
result, the task's evaluation), never typed by hand.

``python scripts/render_results.py`` renders the README's section from a committed summary
(``docs/results/smoke.json``, a copy of a run's ``results.json``) and checks that they match.
"""

from __future__ import annotations

import html
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any, Optional

SUMMARY_FILE = "results.json"
NOTEBOOKS = ("00_environment", "01_data_validation", "02_memory_budget", "03_training", "04_evaluation")


def _read_json(path: Path) -> Optional[dict[str, Any]]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _task_name(run_dir: Path) -> Optional[str]:
    import yaml

    for name in ("train_params.yaml", "params.yaml"):
        try:
            values = yaml.safe_load((run_dir / name).read_text()) or {}
        except (OSError, ValueError, yaml.YAMLError):
            continue
        if isinstance(values, dict) and values.get("task"):
            return str(values["task"])
    result = _read_json(run_dir / "train_result.json")
    return result.get("task") if result else None


def commit() -> Optional[str]:
    """The checkout's commit, with "-dirty" when it has uncommitted changes (None outside git)."""
    try:
        # "-dirty" when the tree has uncommitted changes: the numbers then come from code no commit holds
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=7"], cwd=Path(__file__).resolve().parents[1],
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def summarise(run_dir: str | Path, durations: Optional[dict[str, Optional[float]]] = None) -> dict[str, Any]:
    """The run's summary: verdicts (finding, next action), training (steps, best step and score,
    wall time), the task's headline numbers and tables, notebook wall times and where it ran."""
    from astrobio_lib import tasks
    from astrobio_lib.report import read_verdict

    run_dir = Path(run_dir)
    verdicts = {n: v for n in NOTEBOOKS if (v := read_verdict(run_dir, n))}
    train = _read_json(run_dir / "train_result.json")
    task_name = _task_name(run_dir)
    task_results: dict[str, Any] = {}
    if task_name in tasks.BUILTIN:
        spec = tasks.get(task_name)
        if spec.results is not None:
            task_results = spec.results(run_dir) or {}
    out: dict[str, Any] = {"run": run_dir.name, "task": task_name, "verdicts": verdicts,
                           "results": task_results, "durations_s": {k: round(v, 1) for k, v in (durations or {}).items()
                                                                    if v is not None}}
    if train:
        out["training"] = {k: train.get(k) for k in ("step", "stopped_because", "best_step", "best_val", "last_val",
                                                     "vals_without_improvement", "micro_batch_size")}
        out["training"]["elapsed_s"] = round(float(train.get("elapsed_s") or 0.0), 1)
        if out["training"].get("best_val") is not None:
            out["training"]["best_val"] = round(float(out["training"]["best_val"]), 4)
    return out


def write_summary(run_dir: str | Path, durations: Optional[dict[str, Optional[float]]] = None,
                  params: Optional[str] = None) -> Path:
    """Writes ``<run>/results.json``: :func:`summarise` plus where and when it ran (commit, params
    file, CPU count, load average) — what a number in the README names as its source."""
    from astrobio_lib.fsutil import atomic_write

    run_dir = Path(run_dir)
    summary = summarise(run_dir, durations)
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    summary["provenance"] = {"commit": commit(), "params": params, "created": time.strftime("%Y-%m-%d %H:%M"),
                             "machine": f"{os.cpu_count()} CPU cores, {platform.machine()}, Python {platform.python_version()}",
                             "load_average_at_end": load}
    path = run_dir / SUMMARY_FILE
    atomic_write(path, json.dumps(summary, indent=1, default=str))
    return path


def _table_html(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in r.values()) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def panel_html(summary: dict[str, Any]) -> str:
    """The results panel of ``index.html``: the run's finding and next action, its headline numbers,
    the task's tables and the training line."""
    r = summary.get("results") or {}
    v4 = summary.get("verdicts", {}).get("04_evaluation")
    parts = ["<div id='results' style='border:2px solid #d0d7de;border-radius:.4em;padding:.6em 1.2em;"
             "background:#f6f8fa;max-width:75em'><h2 style='margin:.3em 0'>Results</h2>"]
    finding = r.get("finding") or (v4 or {}).get("headline")
    if finding:
        parts.append(f"<p style='font-size:110%'><b>{html.escape(v4['status']) + ':' if v4 else ''}</b> "
                     f"{html.escape(finding)}</p>")
    if v4 and v4.get("next_action"):
        parts.append(f"<p><b>next:</b> {html.escape(v4['next_action'])}</p>")
    others = [(n, v) for n, v in summary.get("verdicts", {}).items() if n != "04_evaluation" and v["status"] != "PASS"]
    for name, v in others:
        parts.append(f"<p>{html.escape(name)} <b>{v['status']}</b>: {html.escape(v['headline'])}"
                     + (f" — <b>next:</b> {html.escape(v['next_action'])}" if v.get("next_action") else "") + "</p>")
    numbers = r.get("numbers") or {}
    if numbers:
        parts.append("<p>" + " · ".join(f"{html.escape(k)}: <b>{html.escape(_fmt(x))}</b>" for k, x in numbers.items())
                     + "</p>")
    for title, rows in (r.get("tables") or {}).items():
        parts.append(f"<h3 style='margin:.5em 0 .2em'>{html.escape(title)}</h3>{_table_html(rows)}")
    t = summary.get("training")
    if t:
        parts.append(f"<p>training: {t['step']} steps ({t['stopped_because']}), best validation "
                     f"{_fmt(t.get('best_val'))} at step {t.get('best_step')}, {t['elapsed_s']:.0f} s</p>")
    durations = summary.get("durations_s") or {}
    if durations:
        parts.append("<p>wall time: " + " · ".join(f"{html.escape(k)} {v:.0f} s" for k, v in durations.items())
                     + f" · total {sum(durations.values()):.0f} s</p>")
    parts.append("</div>")
    return "".join(parts)


def markdown(summary: dict[str, Any]) -> str:
    """The README's results section (markdown) from a summary, naming its source."""
    r = summary.get("results") or {}
    p = summary.get("provenance") or {}
    lines = [f"*Rendered by `scripts/render_results.py` from `docs/results/{summary['run']}.json` — run "
             f"`{summary['run']}` of params `{p.get('params')}` at commit `{p.get('commit')}`, {p.get('created')}, on "
             f"{p.get('machine')} (load average at the end {p.get('load_average_at_end')}).*", ""]
    v4 = summary.get("verdicts", {}).get("04_evaluation")
    if v4:
        lines += [f"**{v4['status']}**: {v4['headline']}", ""]
        if v4.get("next_action"):
            lines += [f"**Next**: {v4['next_action']}", ""]
    for title, rows in (r.get("tables") or {}).items():
        if not rows:
            continue
        lines += [f"{title}:", "", "| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
        lines += ["| " + " | ".join(_fmt(v) for v in row.values()) + " |" for row in rows]
        lines.append("")
    numbers = r.get("numbers") or {}
    if numbers:
        lines += ["; ".join(f"{k}: {_fmt(v)}" for k, v in numbers.items()) + ".", ""]
    t = summary.get("training")
    if t:
        lines += [f"Training: {t['step']} steps ({t['stopped_because']}), best validation {_fmt(t.get('best_val'))} "
                  f"at step {t.get('best_step')}, {t['elapsed_s']:.0f} s. Wall time per notebook: "
                  + ", ".join(f"{k} {v:.0f} s" for k, v in (summary.get("durations_s") or {}).items()) + ".", ""]
    return "\n".join(lines).rstrip() + "\n"

