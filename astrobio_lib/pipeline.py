"""Runs the notebooks of a run with papermill: ``python -m astrobio_lib.pipeline PARAMS.yaml``.

A run folder ``outputs/<run>/`` is the unit of work. Running the same command again continues
the run: notebooks already completed with the same parameters are skipped (``--force`` redoes
them), and the training notebook resumes from its newest valid checkpoint.

Failures are loud. A cell error, a dead kernel (the papermill CLI exits 138 and leaves no error
banner) or a report without its completion marker marks the notebook ``failed`` in
``index.html``, stops the run and exits non-zero naming the notebook and the cell.

Parameters are strict: every key of the params file must be declared by the parameters cell of
at least one notebook, with a compatible type, and must pass the library's validation
(:mod:`astrobio_lib.config`, cross-field rules included). Otherwise nothing is executed.

Preemption: SIGTERM (or Ctrl-C) is passed on to the kernel and its children (``torchrun`` and its
ranks), which finish the current step and checkpoint; the notebook is marked ``interrupted`` in
the state and ``index.html``, no further notebook starts, and the pipeline exits with 75 — run the
same command again to continue. A second Ctrl-C stops at once.

A run folder is locked (``run.lock``) while a pipeline works in it: a second one is refused with
the holder's pid, host and start time; the lock of a process that is gone is taken over.

Exit codes: 0 done, 1 a notebook failed, 2 bad parameters or a locked run folder, 75 interrupted.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import datetime as dt
import hashlib
import html
import json
import logging
import re
import signal
import sys
import time
import typing
from pathlib import Path
from typing import Any, Optional, Sequence

from astrobio_lib import config as cfg_mod
from astrobio_lib.config import ConfigError
from astrobio_lib.fsutil import RunFolderError, RunLock, RunLockedError, atomic_write, usable_folder
from astrobio_lib.report import (
    LOG_DATEFMT,
    LOG_FORMAT,
    LOGGED_LINE,
    export_html,
    has_completion_marker,
    read_verdict,
)
from astrobio_lib.train.preemption import INTERRUPTED_EXIT, Preemption

log = logging.getLogger("astrobio.pipeline")

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
STATE_FILE = "pipeline_state.json"
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Names an annotation in a parameters cell may use.
_ANNOTATION_NAMESPACE = {"Optional": typing.Optional, "Union": typing.Union, "List": typing.List, "Tuple": typing.Tuple,
                         "Any": typing.Any, "int": int, "float": float, "str": str, "bool": bool}


class PipelineError(RuntimeError):
    """A notebook failed, or the run could not start."""


class PipelineInterrupted(PipelineError):
    """SIGTERM / SIGINT stopped the run; running the same command again continues it."""


# Notebooks whose products are the run's data: skipped only when the data still verifies.
DATA_NOTEBOOKS = ("01_data_validation",)


def data_problem(values: dict[str, Any], run_dir: Path) -> Optional[str]:
    """Why the run's prepared data does not verify (its task's check), or None."""
    from astrobio_lib import tasks

    cfg = cfg_mod.from_mapping(values)
    spec = tasks.of(cfg)
    return spec.check_data(cfg, run_dir / "data") if spec.check_data else None


# Exceptions a notebook raises on purpose to mark itself interrupted rather than failed.
INTERRUPTED_ERRORS = ("TrainingInterrupted", "GenerationInterrupted")


@dataclasses.dataclass(frozen=True)
class NotebookParam:
    name: str
    annotation: str
    type: Any
    default: Any
    help: str


@dataclasses.dataclass
class NotebookSpec:
    name: str  # "03_training"
    path: Path  # the percent-format .py source
    params: dict[str, NotebookParam]
    source_sha256: str


# --------------------------------------------------------------------------- notebooks


def parse_parameters_cell(source: str, where: str) -> dict[str, NotebookParam]:
    """Returns the parameters declared by a parameters cell.

    Each non-blank, non-comment line must read ``name: Type = literal  # help``.

    Raises:
        PipelineError: a line of another form, an unknown annotation, a non-literal default, or a
            missing help comment.
    """
    params: dict[str, NotebookParam] = {}
    for lineno, line in enumerate(source.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        code, sep, comment = line.partition("  #")
        try:
            node = ast.parse(code.strip()).body[0]
        except (SyntaxError, IndexError) as exc:
            raise PipelineError(f"{where}, parameters line {lineno}: cannot parse {line!r}: {exc}") from exc
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and node.value is not None):
            raise PipelineError(f"{where}, parameters line {lineno}: expected "
                                f"'name: Type = literal  # help', got {line!r}")
        annotation = ast.unparse(node.annotation)
        if "|" in annotation:
            raise PipelineError(f"{where}: {node.target.id}: write Optional[...] instead of "
                                f"'{annotation}' (papermill's inspector misses 'X | None')")
        try:
            tp = eval(annotation, dict(_ANNOTATION_NAMESPACE))  # names limited to the table above
            default = ast.literal_eval(node.value)
        except Exception as exc:
            raise PipelineError(f"{where}: {node.target.id}: annotation and default must be "
                                f"simple types and a literal ({exc})") from exc
        if not sep or not comment.strip():
            raise PipelineError(f"{where}: {node.target.id} has no help comment "
                                f"('{node.target.id}: {annotation} = ...  # what it does')")
        params[node.target.id] = NotebookParam(node.target.id, annotation, tp, default,
                                               comment.strip())
    return params


def read_notebook(path: Path):
    """Returns the jupytext NotebookNode of a percent-format ``.py`` notebook."""
    import jupytext

    return jupytext.read(path)


def load_spec(path: Path) -> NotebookSpec:
    """Returns a notebook's declared parameters, after checking its required structure.

    Raises:
        PipelineError: no kernelspec, not exactly one parameters cell, or no completion-marker
            cell at the end.
    """
    nb = read_notebook(path)
    where = str(path)
    if not nb.metadata.get("kernelspec", {}).get("name"):
        raise PipelineError(f"{where} has no kernelspec header: papermill would fail with "
                            f"'No kernel name found'. Add the jupytext header with kernelspec python3.")
    param_cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    if len(param_cells) != 1:
        raise PipelineError(f"{where}: expected exactly one cell tagged 'parameters', "
                            f"found {len(param_cells)}")
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    if not code_cells or "completion-marker" not in code_cells[-1].metadata.get("tags", []):
        raise PipelineError(f"{where}: the last code cell must be tagged 'completion-marker' "
                            f"(so a report that stopped early never looks finished)")
    return NotebookSpec(
        name=path.stem, path=path,
        params=parse_parameters_cell(param_cells[0].source, where),
        source_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
    )


def discover(notebooks_dir: Path = DEFAULT_NOTEBOOKS_DIR) -> list[NotebookSpec]:
    """Returns the specs of ``NN_name.py`` notebooks in order."""
    paths = sorted(notebooks_dir.glob("[0-9][0-9]_*.py"))
    if not paths:
        raise PipelineError(f"no notebooks (NN_name.py) found in {notebooks_dir}")
    return [load_spec(p) for p in paths]


# --------------------------------------------------------------------------- parameters


def check_params(values: dict[str, Any], specs: Sequence[NotebookSpec], where: str) -> None:
    """Refuses a params mapping that any notebook would not accept.

    Raises:
        ConfigError: a key declared by no notebook (naming the nearest declared key), a value
            whose type does not fit the declaring notebook's annotation, or a value the
            library's dataclasses reject.
    """
    declared: dict[str, tuple[str, NotebookParam]] = {}
    for spec in specs:
        for name, p in spec.params.items():
            declared.setdefault(name, (spec.name, p))
    for key, value in values.items():
        if key not in declared:
            near = cfg_mod.nearest_key(key, declared)
            hint = f" — did you mean {near!r}?" if near else ""
            raise ConfigError(f"unknown parameter {key!r} in {where}: no notebook declares it{hint}")
        nb_name, p = declared[key]
        if not cfg_mod.check_value_type(value, p.type):
            raise ConfigError(f"{key}={value!r} in {where}: {nb_name} declares "
                              f"'{key}: {p.annotation}' ({p.help})")
    cfg_mod.from_mapping(values, where=where)


def resolve_paths(values: dict[str, Any], base: Path) -> dict[str, Any]:
    """Returns ``values`` with relative path parameters made absolute against ``base``."""
    fields = cfg_mod.all_fields()
    out = dict(values)
    for key, value in values.items():
        info = fields.get(key)
        if info is not None and info.path and isinstance(value, str) and value:
            out[key] = str((base / value).resolve())
    return out


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


# --------------------------------------------------------------------------- run state


@dataclasses.dataclass
class NotebookState:
    name: str
    status: str = "pending"  # pending | running | completed | skipped | failed | interrupted
    params_sha256: Optional[str] = None
    source_sha256: Optional[str] = None
    started: Optional[str] = None
    duration_s: Optional[float] = None
    error: Optional[str] = None


def _load_state(run_dir: Path) -> dict[str, NotebookState]:
    path = run_dir / STATE_FILE
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text())
        return {str(k): NotebookState(**v) for k, v in raw["notebooks"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        # A damaged state file only costs re-running notebooks; say so and continue.
        log.warning("%s is unreadable (%s): every notebook will be re-run", path, exc)
        return {}


def _save_state(run_dir: Path, states: dict[str, NotebookState]) -> None:
    payload = {"notebooks": {k: dataclasses.asdict(v) for k, v in states.items()}}
    atomic_write(run_dir / STATE_FILE, json.dumps(payload, indent=2))


def report_has_marker(path: Path, name: str) -> bool:
    """True when an executed notebook's outputs contain its completion record."""
    import nbformat

    try:
        nb = nbformat.read(path, as_version=4)
    except Exception:
        return False
    return any(has_completion_marker(cell.get("outputs", []), name) for cell in nb.cells)


def write_index(run_dir: Path, run_name: str, params_file: str,
                states: dict[str, NotebookState], order: Sequence[str]) -> None:
    """Writes ``index.html``: one row per notebook with status, duration and report links."""
    colour = {"completed": "#1a7f37", "skipped": "#1a7f37", "failed": "#cf222e",
              "interrupted": "#cf222e", "running": "#9a6700", "pending": "#57606a"}
    verdict_colour = {"PASS": "#1a7f37", "WARN": "#9a6700", "FAIL": "#cf222e"}
    rows = []
    for name in order:
        st = states.get(name, NotebookState(name))
        links = []
        for ext, label in (("html", "report"), ("code.html", "with code"), ("ipynb", "ipynb")):
            if (run_dir / f"{name}.{ext}").exists():
                label = "live report (updates every 20 s)" if st.status == "running" and ext == "html" else label
                links.append(f'<a href="{name}.{ext}">{label}</a>')
        status = st.status if st.status != "skipped" else "completed (skipped: done earlier)"
        dur = f"{st.duration_s:.1f} s" if st.duration_s is not None else ""
        err = f"<pre>{html.escape(st.error)}</pre>" if st.error else ""
        verdict = read_verdict(run_dir, name) if st.status not in ("pending", "running") else None
        verdict_cell = (f"<b style='color:{verdict_colour[verdict['status']]}'>{verdict['status']}</b> "
                        f"{html.escape(verdict['headline'])}"
                        + (f"<br><b>next:</b> {html.escape(verdict['next_action'])}" if verdict.get("next_action") else "")
                        if verdict else "")
        rows.append(
            f"<tr><td>{html.escape(name)}</td>"
            f"<td style='color:{colour.get(st.status, '#000')};font-weight:bold'>{html.escape(status)}</td>"
            f"<td>{verdict_cell}</td><td>{dur}</td><td>{' · '.join(links)}</td><td>{err}</td></tr>")
    now = dt.datetime.now().isoformat(timespec="seconds")
    banner = ""
    data_manifest = run_dir / "data" / "manifest.json"
    if data_manifest.is_file():
        try:
            synthetic = bool(json.loads(data_manifest.read_text()).get("synthetic"))
        except ValueError:
            synthetic = False
        if synthetic:
            banner = ("<p style='background:#ffebe9;border:2px solid #cf222e;padding:.6em;font-weight:bold'>"
                      "SYNTHETIC catalog: this run trained on a generated planet population, not on real planets."
                      "</p>")
    running = any(states.get(n, NotebookState(n)).status == "running" for n in order)
    refresh = ('<meta http-equiv="refresh" content="15">' if running else "")
    live = ("<p><b>running</b> — this page refreshes itself every 15 s</p>" if running else "")
    page = f"""<!doctype html>
<html><head><meta charset="utf-8">{refresh}<title>astrobio run {html.escape(run_name)}</title>
<style>body{{font-family:sans-serif;margin:2em}} td,th{{padding:.3em .8em;border-bottom:1px solid #ddd;
text-align:left;vertical-align:top}} pre{{white-space:pre-wrap;max-width:60em;margin:0}}</style></head>
<body><h1>astrobio run <code>{html.escape(run_name)}</code></h1>
<p>params: <code>{html.escape(params_file)}</code> · updated {now} · log: <a href="run.log">run.log</a></p>
{banner}{live}
{results_panel(run_dir, states, order)}
<h2>Notebooks</h2>
<table><tr><th>notebook</th><th>status</th><th>verdict</th><th>duration</th><th>report</th><th>error</th></tr>
{''.join(rows)}
</table></body></html>
"""
    atomic_write(run_dir / "index.html", page)


def results_panel(run_dir: Path, states: dict[str, NotebookState], order: Sequence[str]) -> str:
    """The results panel at the top of ``index.html``: the run's answer in numbers, from its own files
    (:func:`astrobio_lib.results.summarise`), and the wall time of each notebook."""
    from astrobio_lib import results

    try:
        summary = results.summarise(run_dir, {n: states[n].duration_s for n in order if n in states})
    except Exception as exc:  # a half-written file while running: the panel waits for the next update
        log.debug("results panel: %s", exc)
        return ""
    return results.panel_html(summary)


def _export_html(ipynb: Path, run_dir: Path, name: str, run_name: str) -> None:
    """Writes the static HTML copies of a report beside it (viewable without Jupyter)."""
    try:
        export_html(ipynb, run_dir, name, run_name)
    except Exception as exc:  # the .ipynb report is the product; a missing HTML copy is not fatal
        log.warning("could not export %s to HTML: %s", ipynb.name, exc)


class _LiveReport:
    """While a notebook runs, re-exports its partial report to HTML every ``every_s`` seconds
    (papermill saves the ``.ipynb`` after each cell), so ``index.html`` links a live report."""

    def __init__(self, ipynb: Path, run_dir: Path, name: str, run_name: str, on_export=None,
                 every_s: float = 20.0):
        import threading

        self.args = (ipynb, run_dir, name, run_name)
        self.on_export = on_export
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"live-report-{name}", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            if self.args[0].exists():
                try:
                    export_html(*self.args)
                    if self.on_export is not None:
                        self.on_export()
                except Exception:  # a half-written .ipynb: the next tick tries again
                    pass

    def __enter__(self) -> "_LiveReport":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _failed_cell(ipynb: Path) -> str:
    """Returns a description of the cell that was running when the kernel died."""
    import nbformat

    try:
        nb = nbformat.read(ipynb, as_version=4)
    except Exception:
        return "unknown cell"
    for i, cell in enumerate(nb.cells):
        if cell.get("metadata", {}).get("papermill", {}).get("status") == "running":
            first = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
            return f"cell {i} ({first[:60]!r})"
    return "unknown cell"


# --------------------------------------------------------------------------- running


def select(specs: Sequence[NotebookSpec], only: Optional[Sequence[str]],
           start: Optional[str]) -> list[NotebookSpec]:
    """Returns the notebooks chosen by ``--only`` / ``--from`` (names, prefixes like '03')."""

    def find(token: str) -> int:
        hits = [i for i, s in enumerate(specs)
                if s.name == token or s.name.startswith(token) or s.name.split("_", 1)[1] == token]
        if len(hits) != 1:
            names = ", ".join(s.name for s in specs)
            raise PipelineError(f"notebook {token!r} matches {len(hits)} notebooks; choose from {names}")
        return hits[0]

    chosen = list(range(len(specs)))
    if start:
        chosen = [i for i in chosen if i >= find(start)]
    if only:
        wanted = {find(t) for t in only}
        chosen = [i for i in chosen if i in wanted]
    return [specs[i] for i in chosen]


class _KernelStream:
    """Takes a kernel's stdout or stderr (papermill's ``stdout_file`` / ``stderr_file``) and logs
    it one line per event under the notebook's name: stdout at INFO, stderr at WARNING, each frame
    of a carriage-return progress bar as its own line (at most one per the bar's interval). Lines
    that already are log records (the kernel and the trainer write those to ``run.log``
    themselves) reach the terminal unchanged and ``run.log`` not a second time."""

    def __init__(self, notebook: str, level: int):
        self.log = logging.getLogger(notebook)
        self.level = level
        self._buf = ""
        self._last = None

    def write(self, text: str) -> int:
        self._buf += text
        parts = re.split(r"[\r\n]", self._buf)
        self._buf = parts.pop()
        for part in parts:
            self._emit(part)
        return len(text)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self._emit(self._buf)
        self._buf = ""

    def _emit(self, line: str) -> None:
        line = line.rstrip()
        if not line.strip() or line == self._last:
            return
        self._last = line
        self.log.log(self.level, line, extra={"astrobio_logged": bool(re.match(LOGGED_LINE, line))})


class _RunLogFormatter(logging.Formatter):
    """``time LEVEL name: message``; a kernel line that is already a log record passes unchanged."""

    def __init__(self) -> None:
        super().__init__(LOG_FORMAT, LOG_DATEFMT)

    def format(self, record: logging.LogRecord) -> str:
        return record.getMessage() if getattr(record, "astrobio_logged", False) else super().format(record)


def _not_logged_yet(record: logging.LogRecord) -> bool:
    return not getattr(record, "astrobio_logged", False)


def _setup_logging(run_dir: Path) -> list[logging.Handler]:
    fmt = _RunLogFormatter()
    file_handler = logging.FileHandler(run_dir / "run.log")
    file_handler.setFormatter(fmt)
    file_handler.addFilter(_not_logged_yet)
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(file_handler)
    logging.getLogger("papermill").setLevel(logging.WARNING)  # its input/output/cwd lines: not events
    added = [file_handler]
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
               for h in root.handlers):
        console = logging.StreamHandler(sys.stdout)
        console.setFormatter(fmt)
        root.addHandler(console)
        added.append(console)
    return added


def run_pipeline(params_file: str | Path, run_name: Optional[str] = None, *,
                 outputs_dir: str | Path = "outputs",
                 notebooks_dir: str | Path = DEFAULT_NOTEBOOKS_DIR,
                 only: Optional[Sequence[str]] = None, start: Optional[str] = None,
                 force: bool = False, overrides: Optional[dict[str, Any]] = None,
                 restart_training: bool = False) -> dict[str, NotebookState]:
    """Executes the notebooks of a run in order and returns each one's final state.

    ``overrides`` (``-p key=value`` on the command line) replace single keys of the params file and
    pass the same validation. A run folder whose checkpoints were trained on other data than these
    parameters describe is refused before any notebook runs (:func:`guard_trained_data`);
    ``restart_training`` moves its checkpoints, metrics and data aside instead.

    Raises:
        ConfigError: the params file is malformed or names an unknown/invalid parameter
            (raised before any notebook runs).
        PipelineError: a notebook failed; its state is ``failed`` in ``index.html``.
        PipelineInterrupted: SIGTERM/SIGINT stopped the run (state ``interrupted``).
    """
    params_file = Path(params_file)
    notebooks_dir = Path(notebooks_dir).resolve()
    specs = discover(notebooks_dir)
    values = cfg_mod.load_yaml(params_file)
    where = str(params_file)
    if overrides:
        values.update(overrides)
        where += " with -p " + " ".join(f"{k}={v!r}" for k, v in overrides.items())
    check_params(values, specs, where=where)  # before anything is executed or written

    if run_name is not None and not run_name.strip():
        raise ConfigError("--run-name is empty: give a folder name, or leave the option out to use the params "
                          f"file's name ({params_file.stem})")
    run_name = run_name or params_file.stem
    if not _RUN_NAME.match(run_name):
        raise ConfigError(f"run name {run_name!r}: use letters, digits, '.', '_' and '-'")
    run_dir = (Path(outputs_dir) / run_name).resolve()
    check_run_folder(run_dir)
    lock = RunLock(run_dir, "run.lock", "pipeline")
    try:
        lock.acquire()
    except RunLockedError as exc:
        raise ConfigError(str(exc)) from exc
    except OSError as exc:
        raise ConfigError(f"run folder {run_dir}: cannot create its lock ({exc.strerror}): choose a writable "
                          f"--outputs folder") from exc
    handlers: list[logging.Handler] = []
    try:
        values = resolve_paths(values, Path.cwd())
        values["run_dir"] = str(run_dir)
        handlers = _setup_logging(run_dir)
        guard_trained_data(values, run_dir, where, restart_training)  # before any notebook runs
        atomic_write(run_dir / "params.yaml",
                     f"# resolved from {params_file}\n" + __import__("yaml").safe_dump(values, sort_keys=True))
        if lock.took_over:  # said on stderr when it happened, before run.log existed: in run.log too
            held = lock.took_over
            log.warning("took over a stale lock %s of process %s on %s (started %s), which is gone", lock.path,
                        held.get("pid"), held.get("host"), held.get("started"))
        with _StopOnSignal() as stop:
            return _run_notebooks(specs, values, run_dir, run_name, params_file, notebooks_dir, only, start,
                                  force, stop)
    finally:
        for handler in handlers:
            logging.getLogger().removeHandler(handler)
            handler.close()
        lock.release()


def check_run_folder(run_dir: Path) -> None:
    """Refuses a run folder the run cannot use, naming the path: not creatable or not writable (a
    read-only file system), or ``checkpoints`` / ``data`` that are files.

    Raises:
        ConfigError: the path and what to do.
    """
    try:
        usable_folder(run_dir, "products")
        for name in ("checkpoints", "data"):
            if (run_dir / name).exists():
                usable_folder(run_dir / name, name)
    except RunFolderError as exc:
        raise ConfigError(str(exc)) from exc


def guard_trained_data(values: dict[str, Any], run_dir: Path, where: str, restart_training: bool) -> None:
    """The data a run trained on is immutable for that run: parameters whose task or data keys differ
    from what the run's checkpoints were trained with are refused before any notebook runs — unless
    ``restart_training``, which moves the checkpoints, metrics and data into ``superseded-<time>/``
    (kept, not deleted) so the run starts over on the new data.

    Raises:
        ConfigError: naming each key with both values and the two ways forward.
    """
    from astrobio_lib import tasks

    cfg = cfg_mod.from_mapping(values, where=where)
    trained = tasks.trained_config(run_dir)
    if trained is None:
        return
    changed = tasks.changed_data(cfg, trained)
    if not changed:
        return
    if not restart_training:
        try:
            tasks.refuse_changed_data(cfg, run_dir, where)
        except tasks.TrainedDataChanged as exc:
            raise ConfigError(str(exc)) from exc
    aside = run_dir / f"superseded-{dt.datetime.now().strftime('%Y%m%dT%H%M%S')}"
    aside.mkdir()
    for name in ("checkpoints", "data", "metrics.jsonl", "train_result.json", "train_params.yaml", "wandb",
                 STATE_FILE):
        if (run_dir / name).exists():
            (run_dir / name).rename(aside / name)
    log.warning("--restart-training: the run's checkpoints, metrics and data (trained with %s) moved to %s; the run "
                "starts over", ", ".join(f"{k}: {a!r}" for k, (a, _) in changed.items()), aside)


class _StopOnSignal(Preemption):
    """SIGTERM / SIGINT → remember it (as the trainer's :class:`Preemption` does) and pass SIGTERM on
    to every child process (the kernel, torchrun and its ranks), which checkpoint and end."""

    def _handle(self, signum, frame) -> None:
        super()._handle(signum, frame)
        forward_signal(signal.SIGTERM)


def forward_signal(sig: int) -> int:
    """Sends ``sig`` to every descendant of this process; returns how many received it."""
    import psutil

    sent = 0
    for child in psutil.Process().children(recursive=True):
        try:
            child.send_signal(sig)
            sent += 1
        except psutil.Error:
            pass
    return sent


def _run_notebooks(specs, values, run_dir: Path, run_name: str, params_file: Path, notebooks_dir: Path,
                   only, start, force: bool, stop: _StopOnSignal) -> dict[str, NotebookState]:
    import papermill as pm
    from nbclient.exceptions import DeadKernelError

    order = [s.name for s in specs]
    states = _load_state(run_dir)
    for name in order:
        states.setdefault(name, NotebookState(name))
    chosen = select(specs, only, start)
    log.info("run %s: %s (params %s)", run_name, run_dir, params_file)
    for spec in chosen:
        nb_params = {k: v for k, v in values.items() if k in spec.params}
        params_sha = _digest(nb_params)
        out = run_dir / f"{spec.name}.ipynb"
        st = states[spec.name]
        done = (st.status in ("completed", "skipped") and st.params_sha256 == params_sha
                and out.exists() and report_has_marker(out, spec.name))
        if done and not force and spec.name in DATA_NOTEBOOKS:
            problem = data_problem(values, run_dir)
            if problem:  # its products are the data: a damaged set is rebuilt, never trained on
                log.warning("%s completed earlier, but its data does not verify (%s): running it again", spec.name,
                            problem)
                done = False
        if done and not force:
            if st.source_sha256 != spec.source_sha256:
                log.warning("%s: source changed since it completed; skipped anyway "
                            "(use --force --only %s to redo it)", spec.name, spec.name)
            log.info("%s: completed earlier with the same parameters — skipped "
                     "(--force to redo)", spec.name)
            st.status = "skipped"
            _save_state(run_dir, states)
            write_index(run_dir, run_name, str(params_file), states, order)
            continue
        if stop.reason:
            break

        st.status, st.error = "running", None
        st.params_sha256, st.source_sha256 = params_sha, spec.source_sha256
        st.started = dt.datetime.now().isoformat(timespec="seconds")
        st.duration_s = None
        _save_state(run_dir, states)
        write_index(run_dir, run_name, str(params_file), states, order)
        log.info("%s: executing with %s", spec.name, nb_params)
        t0 = time.monotonic()
        streams = (_KernelStream(spec.name, logging.INFO), _KernelStream(spec.name, logging.WARNING))
        try:
            with _LiveReport(out, run_dir, spec.name, run_name,
                             on_export=lambda: write_index(run_dir, run_name, str(params_file), states, order)):
                pm.execute_notebook(
                    read_notebook(spec.path), str(out), parameters=nb_params,
                    log_output=False, stdout_file=streams[0], stderr_file=streams[1],
                    progress_bar=False, cwd=str(notebooks_dir),
                    request_save_on_cell_execute=True, start_timeout=120,
                    kernel_name=None,
                )
            if not report_has_marker(out, spec.name):
                raise PipelineError(
                    f"{spec.name} ended without its completion marker (a cell called "
                    f"sys.exit() or the marker cell did not run): report {out}")
            st.status = "completed"
        except DeadKernelError as exc:
            st.status = "failed"
            st.error = f"kernel died in {_failed_cell(out)}: {exc}"
        except pm.PapermillExecutionError as exc:
            st.status = "interrupted" if exc.ename in INTERRUPTED_ERRORS else "failed"
            st.error = (f"cell {exc.cell_index} (execution count {exc.exec_count}) raised "
                        f"{exc.ename}: {exc.evalue}")
        except PipelineError as exc:
            st.status = "failed"
            st.error = str(exc)
        except KeyboardInterrupt:
            st.status, st.error = "interrupted", "interrupted by the user (Ctrl-C twice)"
            raise
        except Exception as exc:  # kernel start failures, I/O errors: still a failed notebook
            st.status = "failed"
            st.error = f"{type(exc).__name__}: {exc}"
        finally:
            for stream in streams:
                stream.close()
            if stop.reason and st.status != "completed":
                st.status = "interrupted"
                st.error = (f"stopped by {stop.reason} ({st.error or 'during execution'}); run the same command "
                            f"again to continue")
            st.duration_s = round(time.monotonic() - t0, 2)
            _save_state(run_dir, states)
            if out.exists():
                _export_html(out, run_dir, spec.name, run_name)
            write_index(run_dir, run_name, str(params_file), states, order)
        if st.status == "interrupted":
            raise PipelineInterrupted(f"notebook {spec.name} interrupted: {st.error}\n"
                                      f"  report: {out}\n  index:  {run_dir / 'index.html'}")
        if st.status == "failed":
            raise PipelineError(f"notebook {spec.name} failed: {st.error}\n"
                                f"  report: {out}\n  index:  {run_dir / 'index.html'}")
        log.info("%s: completed in %.1f s", spec.name, st.duration_s)
    if stop.reason:
        raise PipelineInterrupted(f"stopped by {stop.reason}: run the same command again to continue")
    # the summary boxes of earlier reports (00's data line, the verdicts) as they stand at the end of the run
    for name in order:
        if (run_dir / f"{name}.ipynb").exists():
            _export_html(run_dir / f"{name}.ipynb", run_dir, name, run_name)
    from astrobio_lib import results

    try:
        shown = (str(params_file.resolve().relative_to(REPO_ROOT)) if params_file.resolve().is_relative_to(REPO_ROOT)
                 else params_file.name)
        results.write_summary(run_dir, {n: states[n].duration_s for n in order if n in states}, params=shown)
    except Exception as exc:  # the reports are the product; a missing summary is named, not fatal
        log.warning("could not write results.json: %s", exc)
    write_index(run_dir, run_name, str(params_file), states, order)
    log.info("run %s finished: %s", run_name, run_dir / "index.html")
    return states


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m astrobio_lib.pipeline",
        description="Run the astrobio notebooks with papermill into outputs/<run>/. Running the "
                    "same command again continues the run.")
    parser.add_argument("params", help="params YAML file, e.g. params/smoke.yaml")
    parser.add_argument("--run-name", help="run folder name under outputs/ (default: params file stem)")
    parser.add_argument("--only", nargs="+", metavar="NB", help="run only these notebooks (e.g. 03)")
    parser.add_argument("--from", dest="start", metavar="NB", help="start at this notebook")
    parser.add_argument("--force", action="store_true", help="re-run notebooks that completed")
    parser.add_argument("--restart-training", action="store_true",
                        help="the parameters change the data this run's checkpoints were trained on: move its "
                             "checkpoints, metrics and data aside (superseded-<time>/) and start over")
    parser.add_argument("--outputs", default="outputs", help="parent folder of run folders")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                        help="override one parameter of the params file (YAML value, e.g. -p max_steps=500)")
    parser.add_argument("--notebooks-dir", default=str(DEFAULT_NOTEBOOKS_DIR), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        overrides = {}
        for item in args.param:
            key, sep, raw = item.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"-p {item!r}: write -p key=value (e.g. -p max_steps=500)")
            try:
                overrides[key.strip()] = cfg_mod.parse_yaml_value(raw)
            except Exception as exc:  # yaml.YAMLError: a value that is no YAML scalar
                raise ConfigError(f"-p {item!r}: the value is not valid YAML ({exc})") from exc
        run_pipeline(args.params, args.run_name, outputs_dir=args.outputs, overrides=overrides,
                     notebooks_dir=args.notebooks_dir, only=args.only, start=args.start,
                     force=args.force, restart_training=args.restart_training)
    except PipelineInterrupted as exc:
        print(f"astrobio pipeline: {exc}", file=sys.stderr)
        return INTERRUPTED_EXIT
    except (ConfigError, PipelineError) as exc:
        print(f"astrobio pipeline: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
