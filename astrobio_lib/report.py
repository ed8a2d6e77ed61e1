"""Small helpers the notebooks share for their verdict and completion-marker cells."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

COMPLETION_MARKER = "ASTROBIO-NOTEBOOK-COMPLETE"
STATUSES = ("ok", "warn", "fail")


@dataclass(frozen=True)
class Check:
    """One row of a verdict table."""

    item: str
    status: str  # ok | warn | fail
    detail: str

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"Check {self.item!r}: status {self.status!r} must be one of {STATUSES}")


def verdict_table(checks: Sequence[Check]) -> str:
    """Returns a fixed-width text table of checks (reads well in logs and executed reports)."""
    width = max([len(c.item) for c in checks] + [4])
    lines = [f"{'item':<{width}}  status  detail", f"{'-' * width}  ------  ------"]
    lines += [f"{c.item:<{width}}  {c.status:<6}  {c.detail}" for c in checks]
    return "\n".join(lines)


def overall(checks: Iterable[Check]) -> str:
    """Returns the worst status among ``checks``: fail > warn > ok."""
    statuses = {c.status for c in checks}
    return "fail" if "fail" in statuses else "warn" if "warn" in statuses else "ok"


PROVENANCE_FILE = "catalog_provenance.json"  # in <run>/data: which catalog the run's data came from


def data_banner(run_dir) -> str:
    """Returns the one-line data provenance of a run (which catalog, real or SYNTHETIC), for the
    top of every report; says so when the run has no data yet."""
    import json
    from pathlib import Path

    path = Path(run_dir) / "data" / PROVENANCE_FILE
    if not path.is_file():
        return "data: none prepared for this run yet (run 01_data_validation)"
    prov = json.loads(path.read_text())
    tag = "SYNTHETIC DATA — not real planets" if prov.get("synthetic") else "real data"
    return f"data: catalog {prov['source']} ({tag}), {prov['rows']} planets, sha256 {prov['sha256'][:12]}…"


MARKER_MIME = "application/vnd.astrobio.complete+json"


def completion_marker(notebook: str) -> None:
    """Leaves the record the pipeline runner looks for at the end of a report: a display output of
    its own MIME type, which notebooks and the HTML exports do not show (machine-readable only).
    Outside a kernel it prints the marker line instead."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        shell = None
    if shell is None or not hasattr(shell, "kernel"):
        print(f"{COMPLETION_MARKER} {notebook}", flush=True)
        return
    from IPython.display import display

    display({MARKER_MIME: {"marker": COMPLETION_MARKER, "notebook": notebook}}, raw=True)


def has_completion_marker(outputs, notebook: str) -> bool:
    """True when a cell's ``outputs`` (nbformat) hold the completion record of ``notebook`` (the
    display record, or the printed line of a run outside a kernel)."""
    for out in outputs:
        data = out.get("data", {}) if out.get("output_type") in ("display_data", "execute_result") else {}
        record = data.get(MARKER_MIME)
        if isinstance(record, dict) and record.get("notebook") == notebook:
            return True
        if out.get("output_type") == "stream" and f"{COMPLETION_MARKER} {notebook}" in out.get("text", ""):
            return True
    return False


VERDICTS_DIR = "verdicts"
VERDICT_STATUSES = ("PASS", "WARN", "FAIL")


def record_verdict(run_dir, notebook: str, status: str, headline: str, next_action: str = "",
                   details: str = "") -> dict:
    """Shows a notebook's verdict and records it as ``<run>/verdicts/<notebook>.json``: status
    PASS / WARN / FAIL, the **finding** (``headline``: one sentence saying what the notebook found),
    the **next action** when the status is not PASS (a parameter, a command or a notebook), and
    optional ``details`` (the numbers behind it). ``index.html`` and the report's summary box show
    them; returns the record.

    Raises:
        ValueError: an unknown status, or a WARN / FAIL without a next action.
    """
    import json
    from pathlib import Path

    from astrobio_lib.fsutil import atomic_write

    status = status.upper()
    if status not in VERDICT_STATUSES:
        raise ValueError(f"verdict status {status!r}: one of {VERDICT_STATUSES}")
    if status != "PASS" and not next_action.strip():
        raise ValueError(f"{notebook}: a {status} verdict needs a next action (what to change or run)")
    record = {"notebook": notebook, "status": status, "headline": headline, "next_action": next_action,
              "details": details}
    folder = Path(run_dir) / VERDICTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / f"{notebook}.json", json.dumps(record, indent=1))
    import logging

    logging.getLogger("astrobio.notebook").info("%s verdict: %s — %s%s", notebook, status, headline,
                                                f" — next: {next_action}" if next_action else "")
    _show_verdict(record)
    return record


def _show_verdict(record: dict) -> None:
    """The verdict as a box in a notebook (plain lines elsewhere)."""
    import html

    lines = [f"{record['notebook']} verdict: {record['status']} — {record['headline']}"]
    if record.get("next_action"):
        lines.append(f"next: {record['next_action']}")
    if record.get("details"):
        lines.append(record["details"])
    try:
        from IPython import get_ipython

        in_kernel = get_ipython() is not None and hasattr(get_ipython(), "kernel")
    except ImportError:
        in_kernel = False
    if not in_kernel:
        print("\n".join(lines), flush=True)
        return
    from IPython.display import HTML, display

    colour = {"PASS": "#1a7f37", "WARN": "#9a6700", "FAIL": "#cf222e"}[record["status"]]
    body = (f"<div style='border-left:6px solid {colour};padding:.4em .8em;background:#f6f8fa;font-family:sans-serif'>"
            f"<b style='color:{colour}'>{record['status']}</b> {html.escape(record['headline'])}"
            + (f"<br><b>next:</b> {html.escape(record['next_action'])}" if record.get("next_action") else "")
            + (f"<br><span style='color:#57606a'>{html.escape(record['details'])}</span>" if record.get("details") else "")
            + "</div>")
    display(HTML(body), metadata={"astrobio": "verdict"})


def read_verdict(run_dir, notebook: str):
    """Returns the recorded verdict of a notebook, or None."""
    import json
    from pathlib import Path

    path = Path(run_dir) / VERDICTS_DIR / f"{notebook}.json"
    try:
        record = json.loads(path.read_text())
        return record if isinstance(record, dict) and record.get("status") in VERDICT_STATUSES else None
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------- notebook logging

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_DATEFMT = "%Y-%m-%d %H:%M:%S"
# A line that already carries this prefix was written to run.log by whoever produced it; the
# pipeline does not copy such lines from a kernel's output into run.log a second time.
LOGGED_LINE = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) "


def start_notebook(run_dir, notebook: str) -> None:
    """Routes a notebook kernel's logging to ``<run>/run.log`` (INFO and up, libraries included,
    Python warnings too) and shows WARNING and up in the report as plain text lines rather than
    stderr boxes; idempotent (re-running the cell in JupyterLab adds no second handler)."""
    import logging
    import os
    import sys
    from pathlib import Path

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = os.path.abspath(run_dir / "run.log")
    root = logging.getLogger()
    fmt = logging.Formatter(LOG_FORMAT, LOG_DATEFMT)
    for handler in list(root.handlers):  # a kernel's default stderr handler, or ours for another run
        if getattr(handler, "_astrobio", False) or (isinstance(handler, logging.StreamHandler)
                                                    and getattr(handler, "stream", None) is sys.stderr):
            root.removeHandler(handler)
    file_handler = logging.FileHandler(path)
    file_handler.setFormatter(fmt)
    file_handler.setLevel(logging.INFO)
    shown = logging.StreamHandler(sys.stdout)
    shown.setFormatter(fmt)
    shown.setLevel(logging.WARNING)
    shown.addFilter(_ours)  # third-party warnings go to run.log only, not into the report
    for handler in (file_handler, shown):
        handler._astrobio = True
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)  # warnings.warn → the 'py.warnings' logger → run.log and a plain line
    logging.getLogger("astrobio.notebook").info("%s started (run folder %s)", notebook, run_dir)


def _ours(record) -> bool:
    """The report shows warnings of this product's loggers (``astrobio``, the notebooks'); a
    library's own warnings (TauREx's optional extras, Dask, papermill) stay in run.log."""
    return record.name.startswith(("astrobio", "0")) or record.name == "py.warnings" and "astrobio" in record.getMessage()


def relative(path, run_dir) -> str:
    """``path`` as a report shows it: relative to the run folder when inside it, else to the
    repository, else with ``~`` for the home folder — never the absolute path of the run."""
    import os
    from pathlib import Path

    p = Path(path).expanduser().resolve()
    home = Path(os.path.expanduser("~")).resolve()
    for base, prefix in ((Path(run_dir).resolve(), ""), (Path(__file__).resolve().parents[1], ""), (home, "~/")):
        if p.is_relative_to(base):
            return prefix + str(p.relative_to(base))
    return str(p)


def section(title: str, text: str = "") -> None:
    """Shows a section heading (and a paragraph) in a notebook report, as a markdown cell would: a
    task's sections appear only in the runs of that task."""
    from IPython.display import Markdown, display

    display(Markdown(f"## {title}" + (f"\n\n{text}" if text else "")))


def show(obj) -> None:
    """Shows a table (or any object) in a notebook report as a cell's last expression would."""
    from IPython.display import display

    display(obj)


class Progress:
    """A ``progress(done, total)`` callback that prints plain progress lines — ``desc: done/total
    (pct) | elapsed | ETA`` — at the first call, then at most one per ``every_s`` seconds, and the
    last one: every line is current when printed (no carriage-return bar frames, which a report and
    run.log would keep); :meth:`close` prints the final line if the last step was not shown."""

    def __init__(self, desc: str, every_s: float = 5.0):
        self.desc, self.every_s = desc, every_s
        self.t0 = None
        self.last_t = None
        self.shown = (0, 0)
        self.state = (0, 0)

    def __call__(self, done: int, total: int) -> None:
        import time

        now = time.monotonic()
        if self.t0 is None:
            self.t0 = now
        self.state = (done, total)
        if self.last_t is None or now - self.last_t >= self.every_s or (done >= total and self.shown != self.state):
            self._print(now)

    def _print(self, now: float) -> None:
        done, total = self.state
        elapsed = now - (self.t0 or now)
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = f" | ETA {(total - done) / rate:.0f} s" if 0 < done < total and rate > 0 else ""
        pct = f" ({100 * done / total:.0f}%)" if total else ""
        print(f"{self.desc}: {done}/{total}{pct} | {elapsed:.0f} s{eta}", flush=True)
        self.last_t, self.shown = now, self.state

    def close(self) -> None:
        import time

        if self.t0 is not None and self.shown != self.state:
            self._print(time.monotonic())

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(iterable, total: int | None = None, desc: str = "", every_s: float = 5.0):
    """Yields from ``iterable`` and prints plain progress lines (:class:`Progress`)."""
    total = len(iterable) if total is None and hasattr(iterable, "__len__") else total
    bar = Progress(desc, every_s)
    for k, item in enumerate(iterable):
        yield item
        bar(k + 1, total or k + 1)
    bar.close()


# --------------------------------------------------------------------------- HTML reports


def _shown_run(run_dir) -> str:
    """The run folder as an HTML report shows it: relative to the repository when inside it, else
    elided to its name (``…/smoke``)."""
    from pathlib import Path

    p = Path(run_dir).resolve()
    try:
        return str(p.relative_to(Path(__file__).resolve().parents[1]))
    except ValueError:
        return f"…/{p.name}"


def export_html(ipynb, run_dir, notebook: str, run_name: str) -> list:
    """Writes the HTML copies of an executed report and returns their paths.

    ``NN_name.html`` hides the code: it opens with a summary box (the notebook's recorded verdict,
    the data provenance, a link back to the run's ``index.html``, the "with code" copy and the
    ``.ipynb``), then a table of contents of its sections. ``NN_name.code.html`` is the same
    with the code. Both are titled ``NN_name · run <run>``. The parameter cells of the ``.ipynb``
    are marked collapsed (``jupyter.source_hidden``), so JupyterLab opens the report with them folded.
    """
    import html
    import logging
    import re
    from pathlib import Path

    import nbformat
    from nbconvert import HTMLExporter

    from astrobio_lib.fsutil import atomic_write

    ipynb, run_dir = Path(ipynb), Path(run_dir)
    nb = nbformat.read(ipynb, as_version=4)
    changed = False
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if cell.cell_type == "code" and ({"parameters", "injected-parameters"} & set(tags)):
            if not cell.metadata.get("jupyter", {}).get("source_hidden"):
                cell.metadata.setdefault("jupyter", {})["source_hidden"] = True
                changed = True
    if changed:
        atomic_write(ipynb, nbformat.writes(nb))

    # the completion record is for the runner, not the reader: no trace of it in the HTML
    shown = nbformat.from_dict(nb)
    run_abs = str(run_dir.resolve())
    for cell in shown.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.get("outputs", []) if MARKER_MIME not in o.get("data", {})]
            # the parameters papermill injected name the run folder absolutely; the HTML shows it as the
            # reports do (relative to the repository, or elided to its name); the .ipynb keeps it whole
            if "injected-parameters" in cell.get("metadata", {}).get("tags", []) and run_abs in cell.source:
                cell.source = cell.source.replace(run_abs, _shown_run(run_dir))
    title = f"{notebook} · run {run_name}"
    verdict = read_verdict(run_dir, notebook)
    colour = {"PASS": "#1a7f37", "WARN": "#9a6700", "FAIL": "#cf222e"}
    if verdict:
        verdict_html = (f"<span style='color:#fff;background:{colour[verdict['status']]};padding:.1em .5em;"
                        f"border-radius:.3em;font-weight:bold'>{verdict['status']}</span> "
                        f"{html.escape(verdict['headline'])}"
                        + (f"<div style='margin-top:.3em'><b>next:</b> {html.escape(verdict['next_action'])}</div>"
                           if verdict.get("next_action") else ""))
    else:
        verdict_html = "<b>no verdict recorded</b> (the notebook did not reach its verdict cell)"
    banner = html.escape(data_banner(run_dir))
    written = []
    for suffix, exclude in (("", True), (".code", False)):
        exporter = HTMLExporter(template_name="lab", exclude_input=exclude, exclude_input_prompt=exclude,
                                exclude_output_prompt=exclude)
        exporter.log.setLevel(logging.ERROR)  # not "Alternative text is missing on N image(s)" per export
        body, _ = exporter.from_notebook_node(shown, resources={"metadata": {"name": title}})
        headings = re.findall(r'<h([12])\s+id="([^"]+)"[^>]*>(.*?)(?:<a class="anchor-link"|</h\1>)', body)
        toc = " · ".join(f"<a href='#{anchor}'>{re.sub('<[^>]+>', '', text).strip()}</a>"
                         for level, anchor, text in headings[1:] if level in ("1", "2"))
        other = (f"<a href='{notebook}.html'>without code</a>" if not exclude
                 else f"<a href='{notebook}.code.html'>with code</a>")
        box = (f"<div id='astrobio-summary' style='font-family:sans-serif;border:2px solid #d0d7de;"
               f"border-radius:.4em;padding:.8em 1.2em;margin:1em auto;max-width:70em;background:#f6f8fa'>"
               f"<div style='font-size:90%'><a href='index.html'>&larr; back to the run</a> · {other} · "
               f"<a href='{notebook}.ipynb'>.ipynb</a></div>"
               f"<h2 style='margin:.4em 0'>{html.escape(title)}</h2>"
               f"<div style='font-size:110%'>verdict: {verdict_html}</div>"
               f"<div style='color:#57606a;margin-top:.3em'>{banner}</div>"
               + (f"<div style='margin-top:.5em;font-size:90%'>contents: {toc}</div>" if toc else "")
               + "</div>")
        body = re.sub(r"(<body[^>]*>)", lambda m, box=box: m.group(1) + box, body, count=1)
        path = ipynb.with_name(f"{notebook}{suffix}.html")
        atomic_write(path, body)
        written.append(path)
    return written
