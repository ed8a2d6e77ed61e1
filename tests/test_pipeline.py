import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from astrobio_lib import pipeline
from astrobio_lib.config import ConfigError
from astrobio_lib.pipeline import PipelineError, check_params, discover, parse_parameters_cell

from .conftest import REPO, make_notebook

PARAM_FILES = sorted((REPO / "params").glob("*.yaml"))


def run_cli(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "astrobio_lib.pipeline", *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, timeout=600)


# ----------------------------------------------------------------------------- parameters


def test_parse_parameters_cell():
    params = parse_parameters_cell(
        'max_steps: int = 20  # optimizer steps\n'
        '# a comment line\n'
        'catalog_path: Optional[str] = None  # local CSV\n', "nb")
    assert params["max_steps"].default == 20 and params["max_steps"].help == "optimizer steps"
    assert params["catalog_path"].annotation == "Optional[str]"


@pytest.mark.parametrize("line, pattern", [
    ("x: int | None = None  # help", "Optional"),
    ("x: int = 3", "no help comment"),
    ("x = 3  # help", "expected 'name: Type = literal"),
    ("x: int = foo()  # help", "literal"),
])
def test_parameters_cell_lint(line, pattern):
    with pytest.raises(PipelineError, match=pattern):
        parse_parameters_cell(line, "nb")


@pytest.mark.parametrize("params_file", PARAM_FILES, ids=lambda p: p.name)
def test_every_params_file_is_accepted(params_file):
    from astrobio_lib.config import load_yaml

    check_params(load_yaml(params_file), discover(), str(params_file))


def test_params_files_exist():
    assert {p.name for p in PARAM_FILES} >= {"smoke.yaml", "single_gpu_24gb.yaml",
                                             "runpod_2xa5000.yaml", "seeds_full_17b.yaml"}


def test_wrong_type_names_the_declaring_notebook():
    with pytest.raises(ConfigError, match=r"max_steps='many'.*\d\d_\w+ declares 'max_steps: int'"):
        check_params({"max_steps": "many"}, discover(), "p.yaml")


def test_misspelled_key_stops_the_cli_before_any_notebook(tmp_path):
    values = yaml.safe_load((REPO / "params" / "smoke.yaml").read_text())
    values["max_step"] = values.pop("max_steps")
    bad = tmp_path / "typo.yaml"
    bad.write_text(yaml.safe_dump(values))
    res = run_cli(bad, "--outputs", tmp_path / "outputs")
    assert res.returncode != 0
    assert "max_step" in res.stderr and "did you mean 'max_steps'" in res.stderr
    assert not (tmp_path / "outputs").exists(), "nothing may be written before the check passes"


# ----------------------------------------------------------------------------- failures


def _index_status(run_dir: Path, name: str) -> str:
    html = (run_dir / "index.html").read_text()
    row = html.split(f"<td>{name}</td>", 1)[1].split("</tr>", 1)[0]
    return row


@pytest.mark.slow
def test_raising_notebook_fails_loudly(tmp_path):
    nbs = tmp_path / "notebooks"
    make_notebook(nbs, "00_ok", params="seed: int = 0  # seed\n")
    make_notebook(nbs, "01_raises", body='raise ValueError("planet table is on fire")')
    make_notebook(nbs, "02_never", body="print('must not run')")
    params = tmp_path / "p.yaml"
    params.write_text("seed: 1\n")
    res = run_cli(params, "--outputs", tmp_path / "out", "--notebooks-dir", nbs)
    assert res.returncode == 1
    assert "01_raises failed" in res.stderr and "ValueError: planet table is on fire" in res.stderr
    assert "cell" in res.stderr
    run_dir = tmp_path / "out" / "p"
    assert "failed" in _index_status(run_dir, "01_raises")
    assert "completed" in _index_status(run_dir, "00_ok")
    assert "pending" in _index_status(run_dir, "02_never")
    assert not (run_dir / "02_never.ipynb").exists()
    state = json.loads((run_dir / "pipeline_state.json").read_text())["notebooks"]
    assert state["01_raises"]["status"] == "failed"


@pytest.mark.slow
def test_killed_kernel_fails_loudly(tmp_path):
    nbs = tmp_path / "notebooks"
    make_notebook(nbs, "00_killed", body="import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    params = tmp_path / "p.yaml"
    params.write_text("{}\n")
    res = run_cli(params, "--outputs", tmp_path / "out", "--notebooks-dir", nbs)
    assert res.returncode == 1
    assert "00_killed failed" in res.stderr and "kernel died" in res.stderr
    assert "failed" in _index_status(tmp_path / "out" / "p", "00_killed")


@pytest.mark.slow
def test_early_exit_without_marker_fails(tmp_path):
    nbs = tmp_path / "notebooks"
    make_notebook(nbs, "00_exits", body="import sys\nsys.exit(0)")
    params = tmp_path / "p.yaml"
    params.write_text("{}\n")
    res = run_cli(params, "--outputs", tmp_path / "out", "--notebooks-dir", nbs)
    assert res.returncode == 1
    assert "without its completion marker" in res.stderr


def test_notebook_without_marker_cell_is_refused(tmp_path):
    path = make_notebook(tmp_path, "00_x")
    path.write_text(path.read_text().replace('tags=["completion-marker"]', ""))
    with pytest.raises(PipelineError, match="completion-marker"):
        pipeline.load_spec(path)


def test_notebook_without_kernelspec_is_refused(tmp_path):
    path = make_notebook(tmp_path, "00_x")
    path.write_text(path.read_text().replace("kernelspec", "nothing"))
    with pytest.raises(PipelineError, match="No kernel name found"):
        pipeline.load_spec(path)


# ----------------------------------------------------------------------------- continuing


@pytest.mark.slow
def test_rerun_skips_completed_and_force_redoes(tmp_path):
    nbs = tmp_path / "notebooks"
    counter = tmp_path / "count.txt"
    body = f"""
    from pathlib import Path
    p = Path({str(counter)!r})
    p.write_text(str(int(p.read_text()) + 1 if p.exists() else 1))
    """
    make_notebook(nbs, "00_count", body=body, params="seed: int = 0  # seed\n")
    params = tmp_path / "p.yaml"
    params.write_text("seed: 1\n")
    kw = dict(outputs_dir=tmp_path / "out", notebooks_dir=nbs)
    states = pipeline.run_pipeline(params, **kw)
    assert states["00_count"].status == "completed" and counter.read_text() == "1"
    states = pipeline.run_pipeline(params, **kw)
    assert states["00_count"].status == "skipped" and counter.read_text() == "1"
    states = pipeline.run_pipeline(params, force=True, **kw)
    assert states["00_count"].status == "completed" and counter.read_text() == "2"
    params.write_text("seed: 2\n")  # other parameters: not the same work, so it runs again
    pipeline.run_pipeline(params, **kw)
    assert counter.read_text() == "3"
    html = (tmp_path / "out" / "p" / "index.html").read_text()
    assert "00_count.ipynb" in html and "00_count.html" in html
    assert (tmp_path / "out" / "p" / "run.log").read_text().count("00_count: executing") == 3


def test_select_only_and_from():
    specs = discover()
    names = [s.name for s in pipeline.select(specs, ["03"], None)]
    assert names == ["03_training"]
    names = [s.name for s in pipeline.select(specs, None, "02_memory_budget")]
    assert names == ["02_memory_budget", "03_training", "04_evaluation"]
    assert [s.name for s in pipeline.select(specs, ["evaluation"], None)] == ["04_evaluation"]
    with pytest.raises(PipelineError, match="matches 0 notebooks"):
        pipeline.select(specs, ["99"], None)


# ----------------------------------------------------------------------------- real notebooks


@pytest.mark.slow
def test_help_notebook_lists_every_parameter(tmp_path):
    import jupytext

    for spec in discover():
        ipynb = tmp_path / f"{spec.name}.ipynb"
        jupytext.write(jupytext.read(spec.path), ipynb)
        res = subprocess.run([sys.executable, "-m", "papermill", "--help-notebook", str(ipynb)],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        # one block per parameter: "  name: type (default ...)" plus wrapped help lines
        blocks, current = {}, None
        for ln in res.stdout.splitlines():
            if ln.startswith("  ") and not ln.startswith("   ") and ":" in ln:
                current = ln.strip().split(":", 1)[0]
                blocks[current] = ln
            elif current and ln.startswith("   "):
                blocks[current] += " " + ln.strip()
        for name, p in spec.params.items():
            assert name in blocks, f"{spec.name}: {name} missing from --help-notebook"
            text = " ".join(blocks[name].split())
            assert f"{name}: {p.annotation} (default" in text and p.help in text, text


@pytest.mark.slow
def test_real_environment_notebook_through_the_runner(tmp_path):
    params = tmp_path / "env.yaml"
    params.write_text("min_free_disk_gb: 0.001\n")
    res = run_cli(params, "--outputs", tmp_path / "out", "--only", "00")
    assert res.returncode == 0, res.stderr[-2000:]
    run_dir = tmp_path / "out" / "env"
    assert pipeline.report_has_marker(run_dir / "00_environment.ipynb", "00_environment")
    env = json.loads((run_dir / "environment.json").read_text())
    assert {c["item"] for c in env["checks"]} >= {"python", "torch", "bitsandbytes", "wandb"}
    assert "completed" in _index_status(run_dir, "00_environment")
    assert "pending" in _index_status(run_dir, "01_data_validation")


@pytest.mark.slow
def test_synthetic_only_when_asked_and_every_report_and_the_index_say_so(tmp_path):
    """Data-layer issue, done-when 6, tightened: a configured catalog that does not exist stops the
    run at notebook 01 (it used to train on synthetic planets); synthetic data only on request."""
    import os

    import nbformat

    env = {k: v for k, v in os.environ.items() if k != "ASTROBIO_CATALOG"}
    missing = tmp_path / "missing.yaml"
    missing.write_text(f"catalog_source: auto\ncatalog_path: {tmp_path / 'absent.csv'}\nn_planets: 64\n")
    res = subprocess.run([sys.executable, "-m", "astrobio_lib.pipeline", str(missing), "--outputs",
                          str(tmp_path / "out"), "--only", "01"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 1 and "absent.csv (from catalog_path) does not exist" in res.stderr
    params = tmp_path / "syn.yaml"
    params.write_text("task: habitability\ncatalog_source: synthetic\nn_planets: 64\n"
                      "label_mc_samples: 16\nmax_steps: 10\nbootstrap_samples: 20\ngas_planets: 0\n")
    res = subprocess.run([sys.executable, "-m", "astrobio_lib.pipeline", str(params), "--outputs",
                          str(tmp_path / "out"), "--from", "01"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    run_dir = tmp_path / "out" / "syn"
    for name in ("01_data_validation", "02_memory_budget", "03_training", "04_evaluation"):
        nb = nbformat.read(run_dir / f"{name}.ipynb", as_version=4)
        first = next(o["text"] for c in nb.cells if c.cell_type == "code"
                     for o in c.get("outputs", []) if o.get("output_type") == "stream" and o["name"] == "stdout")
        assert "SYNTHETIC" in first, (name, first[:300])
    manifest = json.loads((run_dir / "data" / "manifest.json").read_text())
    assert manifest["synthetic"] is True and manifest["catalog"]["source"] == "synthetic"
    index = (run_dir / "index.html").read_text()
    assert "SYNTHETIC catalog" in index
    from astrobio_lib.report import read_verdict

    verdicts = {name: read_verdict(run_dir, name) for name in ("01_data_validation", "02_memory_budget",
                                                              "03_training", "04_evaluation")}
    assert verdicts["01_data_validation"]["status"] == "WARN" and "SYNTHETIC" in verdicts["01_data_validation"]["headline"]
    for name, v in verdicts.items():  # every notebook's verdict is shown in its index row
        assert v is not None and v["status"] in _index_status(run_dir, name), name


def test_a_malformed_state_file_is_a_warning_not_a_traceback(tmp_path, caplog):
    """Fault finding: pipeline_state.json = {"notebooks": []} raised AttributeError."""
    for text in ('{"notebooks": []}', "[1, 2]", '{"notebooks": {"00_x": {"nonsense": 1}}}', "{"):
        (tmp_path / pipeline.STATE_FILE).write_text(text)
        assert pipeline._load_state(tmp_path) == {}
    assert "every notebook will be re-run" in caplog.text


PREEMPT = {"task": "gas_detection", "gas_planets": 12, "gas_atmospheres": 4, "max_steps": 400, "micro_batch_size": 32,
           "grad_accum_steps": 1, "checkpoint_every_steps": 100000, "val_every_steps": 50, "log_every_steps": 10,
           "warmup_steps": 10, "learning_rate": 1e-3}  # W&B offline (the default): its service dies with the group


@pytest.fixture(scope="module")
def preempt_reference(tmp_path_factory):
    """The uninterrupted run the preempted ones must reproduce, and the prepared data they all train on."""
    from astrobio_lib import config
    from astrobio_lib.data import catalog
    from astrobio_lib.data import gas_spectra as gs
    from astrobio_lib.train.loop import train

    planets, provenance = catalog.load_catalog("snapshot")
    rocky = gs.rocky_planets(planets, PREEMPT["gas_planets"])
    data = tmp_path_factory.mktemp("preempt") / "data"
    gs.build_or_load(data / "gas_spectra", rocky, PREEMPT["gas_atmospheres"], 0, workers=0)
    provenance.save(data)
    ref = data.parent / "ref"
    shutil.copytree(data, ref / "data")
    train(config.from_mapping({**PREEMPT, "run_dir": str(ref), "wandb_mode": "disabled"}))
    return data, _losses(ref)


def _losses(run_dir: Path) -> dict[int, float]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if "loss" in r}


@pytest.mark.slow
@pytest.mark.parametrize("target", ["pipeline", "process group"])
def test_sigterm_during_in_kernel_training_keeps_the_last_step_and_the_rerun_continues_exactly(tmp_path,
                                                                                                 preempt_reference,
                                                                                                 target):
    """Issue 23, finding 0: SIGTERM to the pipeline (or to its whole process group, as systemd and
    `tini -g` do) while 03 trains in its kernel with no periodic checkpoint due: the kernel finishes its
    step and checkpoints it (W&B's service process dying under it does not stop that), the notebook is
    `interrupted`, exit 75; the rerun's joined loss curve equals an uninterrupted run. With the pipeline
    itself as the target: a second pipeline meanwhile is refused, and the rerun takes over a stale lock
    and says so in run.log."""
    import os
    import signal
    import time

    from astrobio_lib.train.preemption import INTERRUPTED_EXIT

    data, reference = preempt_reference
    run_dir = tmp_path / "out" / "pre"
    shutil.copytree(data, run_dir / "data")
    params = tmp_path / "pre.yaml"
    params.write_text(yaml.safe_dump(PREEMPT))
    cmd = [sys.executable, "-m", "astrobio_lib.pipeline", str(params), "--outputs", str(tmp_path / "out"), "--only",
           "03"]
    first = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    metrics = run_dir / "metrics.jsonl"
    deadline = time.time() + 300
    while not (metrics.exists() and metrics.read_text().count('"loss"') >= 60):
        assert time.time() < deadline and first.poll() is None, first.communicate()[1][-3000:]
        time.sleep(0.05)
    if target == "pipeline":
        second = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert second.returncode == 2 and f"in use by another pipeline: pid {first.pid}" in second.stderr
        first.send_signal(signal.SIGTERM)
    else:
        os.killpg(first.pid, signal.SIGTERM)
    _, err = first.communicate(timeout=180)
    assert first.returncode == INTERRUPTED_EXIT, err[-3000:]
    assert "interrupted" in err and "run the same command again" in err
    state = json.loads((run_dir / pipeline.STATE_FILE).read_text())["notebooks"]["03_training"]
    assert state["status"] == "interrupted" and "interrupted" in _index_status(run_dir, "03_training")
    last_logged = max(_losses(run_dir))
    result = json.loads((run_dir / "train_result.json").read_text())
    assert result["stopped_because"] == "interrupted" and 60 <= result["step"] < PREEMPT["max_steps"]
    newest = max(int(p.name[5:13]) for p in (run_dir / "checkpoints").glob("step_*.pt"))
    assert newest >= last_logged - 1, f"newest checkpoint at step {newest}, last logged step {last_logged}"
    if target == "pipeline":  # a pipeline that died without releasing its lock (SIGKILL): taken over, logged
        (run_dir / "run.lock").write_text(json.dumps({"pid": 2**22 + 4321, "host": __import__("socket").gethostname(),
                                                      "started": "then"}))
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((run_dir / "train_result.json").read_text())["resumed_from"].endswith(f"step_{newest:08d}.pt")
    assert _losses(run_dir) == reference  # the joined curve equals the uninterrupted run, step by step
    assert "completed" in _index_status(run_dir, "03_training") and not (run_dir / "run.lock").exists()
    if target == "pipeline":
        assert "took over a stale lock" in (run_dir / "run.log").read_text()


@pytest.mark.slow
def test_a_plan_that_does_not_fit_stops_the_pipeline_at_notebook_02(tmp_path):
    """Fault finding: notebook 02 said "DOES NOT FIT" and the run went on into 03."""
    params = tmp_path / "seeds.yaml"
    params.write_text((REPO / "params" / "seeds_full_17b.yaml").read_text())
    res = run_cli(params, "--outputs", tmp_path / "out", "--only", "02", "03")
    assert res.returncode == 1, res.stderr[-3000:]
    assert "02_memory_budget failed" in res.stderr and "MemoryBudgetError" in res.stderr
    assert "does not fit" in res.stderr and "force_plan: true" in res.stderr
    run_dir = tmp_path / "out" / "seeds"
    assert json.loads((run_dir / "memory_budget.json").read_text())["verdict"]["fits"] is False
    assert "pending" in _index_status(run_dir, "03_training")
    assert "FAIL" in _index_status(run_dir, "02_memory_budget") and "does NOT fit" in _index_status(run_dir, "02_memory_budget")


def test_command_line_overrides_are_validated_like_the_params_file(tmp_path, capsys):
    code = pipeline.main(["params/smoke.yaml", "-p", "max_step=3", "--outputs", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "unknown parameter 'max_step'" in err and "did you mean 'max_steps'" in err
    assert "with -p max_step=3" in err and not (tmp_path / "out").exists()
    code = pipeline.main(["params/smoke.yaml", "-p", "learning_rate=2.0", "--outputs", str(tmp_path / "out")])
    assert code == 2 and "learning_rate=2.0" in capsys.readouterr().err
    code = pipeline.main(["params/smoke.yaml", "-p", "max_steps", "--outputs", str(tmp_path / "out")])
    assert code == 2 and "write -p key=value" in capsys.readouterr().err


@pytest.mark.slow
def test_plain_papermill_refuses_an_undeclared_parameter(tmp_path):
    """Notebooks are strict by themselves: plain `papermill -p` only warns, the notebook stops."""
    import jupytext
    import nbformat
    import papermill as pm

    src = tmp_path / "00_environment.ipynb"
    nbformat.write(jupytext.read(REPO / "notebooks" / "00_environment.py"), src)
    with pytest.raises(pm.PapermillExecutionError) as err:
        pm.execute_notebook(str(src), str(tmp_path / "out.ipynb"), cwd=str(REPO / "notebooks"),
                            parameters={"run_dir": str(tmp_path / "run"), "min_free_disk_gb": 0.001,
                                        "max_step": 5}, progress_bar=False)
    assert err.value.ename == "ConfigError"
    assert "unknown parameter(s) 'max_step' (did you mean 'max_steps'?)" in err.value.evalue
