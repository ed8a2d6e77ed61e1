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


def data_banner(run_dir) -> str:
    """Returns the one-line data provenance of a run (which catalog, real or SYNTHETIC), for the
    top of every report; says so when the run has no dataset yet."""
    import json
    from pathlib import Path

    path = Path(run_dir) / "data" / "catalog_provenance.json"
    if not path.is_file():
        return "data: no dataset built for this run yet (run 01_data_validation)"
    prov = json.loads(path.read_text())
    tag = "SYNTHETIC DATA — not real planets" if prov.get("synthetic") else "real data"
    return f"data: catalog {prov['source']} ({tag}), {prov['rows']} planets, sha256 {prov['sha256'][:12]}…"


def completion_marker(notebook: str) -> None:
    """Prints the line the pipeline runner looks for at the end of a report."""
    print(f"{COMPLETION_MARKER} {notebook}", flush=True)


VERDICTS_DIR = "verdicts"
VERDICT_STATUSES = ("PASS", "WARN", "FAIL")


def record_verdict(run_dir, notebook: str, status: str, headline: str) -> dict:
    """Prints a notebook's verdict and records it as ``<run>/verdicts/<notebook>.json`` (status
    PASS / WARN / FAIL and one headline line), which ``index.html`` shows per notebook; returns it.

    Raises:
        ValueError: an unknown status.
    """
    import json
    from pathlib import Path

    from astrobio_lib.fsutil import atomic_write

    status = status.upper()
    if status not in VERDICT_STATUSES:
        raise ValueError(f"verdict status {status!r}: one of {VERDICT_STATUSES}")
    record = {"notebook": notebook, "status": status, "headline": headline}
    folder = Path(run_dir) / VERDICTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / f"{notebook}.json", json.dumps(record, indent=1))
    print(f"{notebook} verdict: {status} — {headline}", flush=True)
    return record


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
