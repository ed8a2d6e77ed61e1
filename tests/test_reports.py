"""Reports a person reads at a glance: a real smoke run's HTML reports, index, run.log and
JupyterLab settings (issue 15)."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = ("00_environment", "01_data_validation", "02_memory_budget", "03_training", "04_evaluation")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    """The whole pipeline on params/smoke.yaml (the shipped real snapshot), shortened by -p."""
    out = tmp_path_factory.mktemp("reports")
    res = subprocess.run([sys.executable, "-m", "astrobio_lib.pipeline", "params/smoke.yaml", "--outputs", str(out),
                          "--run-name", "glance", "-p", "max_steps=20", "-p", "bootstrap_samples=30",
                          "-p", "label_mc_samples=32", "-p", "gas_planets=12", "-p", "gas_atmospheres=4"],
                         cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (out / "glance" / "terminal.txt").write_text(res.stdout + res.stderr)
    return out / "glance"


@pytest.mark.slow
def test_every_report_has_a_title_a_verdict_summary_and_no_stderr(smoke_run):
    import nbformat

    from astrobio_lib.report import read_verdict

    index = (smoke_run / "index.html").read_text()
    for name in NOTEBOOKS:
        nb = nbformat.read(smoke_run / f"{name}.ipynb", as_version=4)
        stderr = [o.get("text", "")[:200] for c in nb.cells for o in c.get("outputs", []) if o.get("name") == "stderr"]
        assert not stderr, (name, stderr)
        hidden = [c.metadata.get("jupyter", {}).get("source_hidden") for c in nb.cells
                  if {"parameters", "injected-parameters"} & set(c.metadata.get("tags", []))]
        assert hidden and all(hidden), name  # parameter cells open folded in JupyterLab
        verdict = read_verdict(smoke_run, name)
        assert verdict is not None, name
        for page, with_code in ((f"{name}.html", False), (f"{name}.code.html", True)):
            body = (smoke_run / page).read_text()
            assert f"<title>{name} · run glance</title>" in body, page
            summary = body[body.index("id='astrobio-summary'"):][:3000]
            assert f">{verdict['status']}</span>" in summary and "href='index.html'" in summary, page
            assert ('jp-InputArea-editor" data-type="inline"' in body) == with_code, page  # code hidden by default
            assert "jp-RenderedText" in body and 'data-mime-type="application/vnd.jupyter.stderr"' not in body
        assert "<b style='color:" in index and f"{verdict['status']}</b> " in index
        assert f'href="{name}.html">report</a>' in index
    # the shipped real snapshot, not synthetic planets, and the banner says so
    first = nbformat.read(smoke_run / "01_data_validation.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in first.cells for o in c.get("outputs", []))
    assert "catalog: snapshot (real data)" in text and "SYNTHETIC" not in text
    assert "contents:" in (smoke_run / "02_memory_budget.html").read_text()


@pytest.mark.slow
def test_a_run_shows_only_its_own_task(smoke_run):
    """Issue 22: the smoke run (task gas_detection) has no habitability section, loss line or plot in
    any report, and builds and budgets no LLM."""
    import nbformat

    for name in NOTEBOOKS:
        page = (smoke_run / f"{name}.html").read_text().lower()
        assert "habitab" not in page, (name, page[max(0, page.index("habitab") - 200):page.index("habitab") + 100])
        nb = nbformat.read(smoke_run / f"{name}.ipynb", as_version=4)
        shown = json.dumps([o for c in nb.cells for o in c.get("outputs", [])]).lower()
        assert "habitab" not in shown.replace("p(habitable)", ""), name
    metrics = (smoke_run / "metrics.jsonl").read_text()
    assert "loss_habitability" not in metrics and "tokens_per_s" not in metrics and "loss_gas_detection" in metrics
    budget = json.loads((smoke_run / "memory_budget.json").read_text())
    assert budget["verdict"]["modalities"] == ["catalog", "spectrum"] and budget["seeds"] is None
    assert set(budget["chosen"]["parameters"]) == {"fusion_and_heads", "total"}
    assert not [p for p in budget["plans"] if "lora" in p["plan"]]
    assert "llm" not in budget["chosen"]["activations_by_component"]
    log = (smoke_run / "run.log").read_text()
    assert "tokens/s" not in log and "TFLOP/s" not in log and "MFU" not in log  # CPU, no text


@pytest.mark.slow
def test_run_log_has_one_line_per_event(smoke_run):
    log = (smoke_run / "run.log").read_text().splitlines()
    assert not [line for line in log if "Executing Cell" in line or "Ending Cell" in line]
    assert not [line for line in log if "WARNING papermill" in line or "Alternative text" in line]
    stamped = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (INFO|WARNING|ERROR) \S")
    assert all(stamped.match(line) for line in log), [line for line in log if not stamped.match(line)][:5]
    # TauREx's own INFO chatter (a block per model build) stays out; the spectra store says what it did
    assert not [line for line in log if re.search(r" (INFO|DEBUG) taurex", line)]
    assert any(" astrobio.spectra: spectra store " in line for line in log)
    # the trainer's progress line is in run.log once (it writes it itself; the kernel's echo is not copied)
    assert sum("step 10/20 |" in line for line in log) == 1
    # library INFO lines keep their level and logger name instead of "WARNING papermill: INFO ..."
    assert any(re.search(r" INFO astrobio\.notebook: 01_data_validation started", line) for line in log)
    # every verdict is in run.log, with its finding (and its next action when not PASS)
    assert any(" INFO astrobio.notebook: 04_evaluation verdict:" in line for line in log)
    # the slow part of 04 shows progress, as text
    assert any("04_evaluation: evaluating (gas_detection)" in line and "100%" in line for line in log)
    terminal = (smoke_run / "terminal.txt").read_text()
    assert "Executing Cell" not in terminal and "IProgress" not in terminal


@pytest.mark.slow
def test_index_results_panel_carries_the_runs_numbers_and_every_verdict_a_finding(smoke_run):
    """Issue 26: index.html opens with the run's answer — the 04 finding, its next action, the detection
    table against the strongest baseline, the calibration, training and wall times — all equal to
    what the run's own files say; every verdict has a finding, and a next action when not PASS."""
    import html as html_mod

    import pandas as pd

    from astrobio_lib.report import read_verdict

    index = html_mod.unescape((smoke_run / "index.html").read_text())
    panel = index[index.index("id='results'"):index.index("<h2>Notebooks</h2>")]
    summary = json.loads((smoke_run / "results.json").read_text())
    ev = json.loads((smoke_run / "gas_evaluation.json").read_text())
    paired = pd.DataFrame(ev["paired"])
    strongest = paired[(paired["against"] == ev["strongest_baseline"]) & paired["n_transits"].isin((10, 30))]
    assert len(strongest) == 10
    for r in strongest.itertuples():  # the model's and the baseline's AUROC, the paired interval, the verdict
        assert f"{r.model_auroc:.3f}" in panel and f"{r.baseline_auroc:.3f}" in panel, r
        assert f"{r.delta_auroc:+.3f} [{r.delta_lo:+.3f}, {r.delta_hi:+.3f}]" in panel, r
    assert f"{ev['coverage_error']:.3f}" in panel
    train = json.loads((smoke_run / "train_result.json").read_text())
    assert f"{train['step']} steps" in panel and f"at step {train['best_step']}" in panel
    v4 = read_verdict(smoke_run, "04_evaluation")
    assert v4["headline"] in panel and summary["verdicts"]["04_evaluation"] == v4
    assert "wall time: 00_environment" in panel
    for name in NOTEBOOKS:
        v = read_verdict(smoke_run, name)
        assert v["headline"].strip(), name
        if v["status"] != "PASS":
            assert v["next_action"].strip() and v["next_action"] in index, name
    assert summary["provenance"]["params"] == "params/smoke.yaml" and summary["provenance"]["machine"]


@pytest.mark.slow
def test_reports_show_no_internals(smoke_run):
    """No completion marker, progress-bar frame, absolute path of the run or repository, or third-party
    warning in any HTML report; 04's first progress line comes within 10 s of its evaluation cell."""
    import datetime as dt

    import nbformat

    from astrobio_lib.pipeline import report_has_marker

    for name in NOTEBOOKS:
        assert report_has_marker(smoke_run / f"{name}.ipynb", name), name  # still machine-readable
        for page in (f"{name}.html", f"{name}.code.html"):
            body = (smoke_run / page).read_text()
            assert "ASTROBIO-NOTEBOOK-COMPLETE" not in body, page
            assert not re.search(r"\d+it/s\]|s/it\]|\|#+", body), page  # tqdm frames
            assert str(smoke_run.resolve()) not in body and str(REPO) not in body, page
            for noise in ("Pybtex", "Numba not installed", "distributed.", "UserWarning", "DeprecationWarning"):
                assert noise not in body, (page, noise)
    nb = nbformat.read(smoke_run / "04_evaluation.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "evaluate.evaluate(cfg" in c.source)
    started = dt.datetime.fromisoformat(cell.metadata["papermill"]["start_time"].replace("Z", "+00:00"))
    first = next(o.get("text", "") for o in cell.outputs if o.get("name") == "stdout")
    assert first.startswith("evaluating (gas_detection):"), first[:200]
    log = (smoke_run / "run.log").read_text().splitlines()
    line = next(x for x in log if "04_evaluation: evaluating (gas_detection):" in x)
    when = dt.datetime.strptime(line[:19], "%Y-%m-%d %H:%M:%S").astimezone(dt.timezone.utc)
    assert (when - started).total_seconds() <= 10 + 1, (when, started)


def test_readme_results_are_rendered_from_the_committed_summary():
    res = subprocess.run([sys.executable, "scripts/render_results.py", "--check"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    summary = json.loads((REPO / "docs" / "results" / "smoke.json").read_text())
    readme = (REPO / "README.md").read_text()
    for row in next(iter(summary["results"]["tables"].values())):
        assert str(row["ΔAUROC [95%]"]) in readme


def test_render_results_from_a_small_run(tmp_path):
    """The summary and its renderings carry a run's own numbers (a hand-made run folder)."""
    from astrobio_lib import results
    from astrobio_lib.report import record_verdict

    run = tmp_path / "tiny"
    run.mkdir()
    record_verdict(run, "03_training", "WARN", "20 steps; validation stopped improving", "set max_steps near 12")
    record_verdict(run, "04_evaluation", "PASS", "the model beats the strongest baseline")
    (run / "train_params.yaml").write_text("task: gas_detection\n")
    (run / "train_result.json").write_text(json.dumps({"step": 20, "stopped_because": "max_steps", "best_step": 10,
                                                       "best_val": 1.23456, "elapsed_s": 12.345, "task": "gas_detection"}))
    paired = [{"gas": g, "n_transits": n, "against": b, "model_auroc": 0.81, "baseline_auroc": 0.75, "delta_auroc": 0.06,
               "delta_lo": 0.01, "delta_hi": 0.11, "verdict": "beats"}
              for g in ("H2O", "CO2", "CH4", "O2", "O3") for n in (10, 30) for b in ("band_depths", "spectrum_gbt")]
    (run / "gas_evaluation.json").write_text(json.dumps({"paired": paired, "strongest_baseline": "band_depths",
                                                         "coverage_error": 0.0312, "n_test_hosts": 8,
                                                         "n_test_spectra": 600, "noise_floor": "white",
                                                         "gap_closed": []}))
    path = results.write_summary(run, {"03_training": 12.0, "04_evaluation": 30.5}, params="params/x.yaml")
    summary = json.loads(path.read_text())
    assert summary["training"]["best_val"] == 1.2346 and summary["provenance"]["params"] == "params/x.yaml"
    md = results.markdown(summary)
    assert "+0.060 [+0.010, +0.110]" in md and "band-depth logistic regression AUROC" in md and "0.031" in md
    assert "best validation 1.235 at step 10" in md and "03_training 12 s" in md
    panel = results.panel_html(summary)
    assert "set max_steps near 12" in panel and "0.810" in panel
    with pytest.raises(ValueError, match="next action"):
        record_verdict(run, "02_memory_budget", "FAIL", "does not fit")


def test_progress_lines_are_current_and_plain(capsys, monkeypatch):
    """A plain line at the first step and at the last, none between within every_s: no bar frames."""
    from astrobio_lib.report import Progress

    clock = iter([0.0, 1.0, 2.0, 7.0, 8.0, 9.0])
    monkeypatch.setattr("time.monotonic", lambda: next(clock))
    with Progress("demo", every_s=5.0) as p:
        for k in range(1, 6):
            p(k, 5)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("demo: 1/5 (20%)") and lines[-1].startswith("demo: 5/5 (100%)")
    assert any(x.startswith("demo: 4/5") for x in lines) and len(lines) == 3 and "\r" not in "".join(lines)


def test_kernel_stream_splits_lines_and_progress_frames(caplog):
    from astrobio_lib.pipeline import _KernelStream

    stream = _KernelStream("07_demo", logging.INFO)
    with caplog.at_level(logging.INFO, logger="07_demo"):
        stream.write("first line\nsecond ")
        stream.write("line\n\rbar  10%\rbar  10%\rbar 100%\n")
        stream.write("2026-01-01 00:00:00 INFO [rank 0] step 1/2 | loss 1.0\ntail without newline")
        stream.close()
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["first line", "second line", "bar  10%", "bar 100%",
                        "2026-01-01 00:00:00 INFO [rank 0] step 1/2 | loss 1.0", "tail without newline"]
    logged = [getattr(r, "astrobio_logged", False) for r in caplog.records]
    assert logged == [False, False, False, False, True, False]


def test_index_refreshes_itself_while_a_notebook_runs(tmp_path):
    from astrobio_lib.pipeline import NotebookState, write_index

    states = {"00_a": NotebookState("00_a", status="completed"), "01_b": NotebookState("01_b", status="running")}
    (tmp_path / "01_b.html").write_text("partial")
    write_index(tmp_path, "r", "p.yaml", states, ["00_a", "01_b"])
    page = (tmp_path / "index.html").read_text()
    assert 'http-equiv="refresh"' in page and "live report" in page
    states["01_b"].status = "completed"
    write_index(tmp_path, "r", "p.yaml", states, ["00_a", "01_b"])
    assert 'http-equiv="refresh"' not in (tmp_path / "index.html").read_text()


def test_notebook_run_dir_resolves_inside_the_repo_from_any_directory(tmp_path, monkeypatch):
    from astrobio_lib import config

    monkeypatch.chdir(tmp_path)
    cfg = config.from_namespace({"run_dir": "outputs/notebook_defaults"})
    assert Path(cfg.run.run_dir) == REPO / "outputs" / "notebook_defaults"
    assert Path(config.from_namespace({"run_dir": str(tmp_path / "x")}).run.run_dir) == tmp_path / "x"
    for nb in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.py")):
        assert 'run_dir: str = "outputs/notebook_defaults"' in nb.read_text(), nb.name


def test_notebooks_are_listed_once_and_open_unchanged():
    """Issue 26: no .ipynb twin beside the percent .py files (jupytext pairs nothing; nbmake's copies go
    to the hidden notebooks/.build/), and a notebook read and written back by jupytext — what JupyterLab
    does on open and save — is byte-for-byte the same file (nothing to mark unsaved)."""
    import jupytext

    config = (REPO / "notebooks" / "jupytext.toml").read_text()
    assert 'formats = "py:percent"' in config and "ipynb," not in config
    assert "notebooks/.build/%.ipynb" in (REPO / "Makefile").read_text()
    for path in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.py")):
        text = path.read_text()
        assert jupytext.writes(jupytext.read(path), fmt="py:percent") == text, path.name


@pytest.mark.slow
def test_make_lab_opens_percent_py_files_as_notebooks(tmp_path):
    """The shipped JupyterLab override makes jupytext's notebook the default viewer of .py files."""
    import socket

    makefile = (REPO / "Makefile").read_text()
    assert "--LabApp.app_settings_dir=$(CURDIR)/jupyter" in makefile and "--ip=$(LAB_IP)" in makefile
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"), "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "user"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"), "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
           "HOME": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
                             "--allow-root", "--IdentityProvider.token=t", f"--notebook-dir={REPO}",
                             f"--LabApp.app_settings_dir={REPO / 'jupyter'}"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/lab/api/settings/@jupyterlab/docmanager-extension:plugin"
        request = urllib.request.Request(url, headers={"Authorization": "token t"})
        deadline, reply = time.monotonic() + 90, None
        while time.monotonic() < deadline and reply is None:
            try:
                with urllib.request.urlopen(request, timeout=5) as resp:
                    reply = json.loads(resp.read())
            except OSError:
                time.sleep(1)
        assert reply is not None, "JupyterLab did not answer within 90 s"
        assert reply["schema"]["properties"]["defaultViewers"]["default"]["python"] == "Jupytext Notebook"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.slow
def test_screenshots_of_the_index_and_the_reports(smoke_run, tmp_path):
    import shutil

    if not any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")):
        pytest.skip("no Chromium on this machine (apt-get install chromium): `make screenshots` needs one")
    res = subprocess.run([sys.executable, "scripts/screenshots.py", str(smoke_run), str(tmp_path)], cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    for name in ("index",) + NOTEBOOKS:
        png = tmp_path / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000, name

