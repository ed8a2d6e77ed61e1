"""Issue 27: the prepared GPU check (``benchmarks/gpu_check.py``) and its carry (``scripts/gpu_wheels.py``).

The dry run is CI's proof that the command the GPU machine will run is sound: every step's setup and
measurement code runs on the CPU with tiny sizes and writes its rows marked ``dry``, and every
third-party module those code paths import is either carried as a wheel or listed as assumed on the
device. The parent's logic — tables, a step that raises or hangs reported while the others still run,
which carried wheels get installed, the carry's size budget — is tested directly.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


gpu_check = _load("gpu_check", REPO / "benchmarks" / "gpu_check.py")
gpu_wheels = _load("gpu_wheels", REPO / "scripts" / "gpu_wheels.py")


# --------------------------------------------------------------------------- tables and statuses


def test_render_table_formats_numbers_booleans_and_puts_the_reason_in_the_status_cell():
    columns = [["config", "configuration"], ["err", "err %", "+.1f"], ["gb", "GB", ".3f"], ["falls", "falls"],
               ["status", "status"]]
    rows = [{"config": "small | bf16", "err": 3.14159, "gb": 2.5, "falls": True, "status": "ok"},
            {"config": "wide", "status": "skipped", "detail": "bitsandbytes does not import"}]
    table = gpu_check.render_table(columns, rows).splitlines()
    assert table[0] == "| configuration | err % | GB | falls | status |"
    assert table[1] == "|---|---|---|---|---|"
    assert table[2] == "| small \\| bf16 | +3.1 | 2.500 | yes | ok |"
    assert table[3] == "| wide |  |  |  | skipped: bitsandbytes does not import |"


def test_step_status_from_rows():
    ok, skipped = {"status": "ok"}, {"status": "skipped", "detail": "no bitsandbytes"}
    failed = {"config": "medium", "status": "failed", "detail": "CUDA out of memory"}
    assert gpu_check.step_status([ok, skipped], dry=False) == ("ok", None)
    assert gpu_check.step_status([skipped, dict(skipped)], dry=False) == ("skipped", "no bitsandbytes")
    assert gpu_check.step_status([ok, failed], dry=False) == ("failed", "medium: CUDA out of memory")
    assert gpu_check.step_status([{"status": "dry"}, skipped], dry=True) == ("dry", None)
    assert gpu_check.step_status([{"status": "dry"}, failed], dry=True)[0] == "failed"  # a dry run can fail
    assert gpu_check.step_status([], dry=False)[0] == "failed"


def test_rank_exit_codes_from_torchrun_failure_summary():
    summary = textwrap.dedent("""\
        E1201 16:03:31.726000 12192 api.py:1002] failed (exitcode: 75) local_rank: 0 (pid: 12197) of binary: python
        Failures:
        [1]:
          rank      : 1 (local_rank: 1)
          exitcode  : 75 (pid: 12198)
        Root Cause (first observed failure):
        [0]:
          rank      : 0 (local_rank: 0)
          exitcode  : 75 (pid: 12197)
        """)
    assert gpu_check.rank_exit_codes(summary) == {0: 75, 1: 75}


def test_rank_exits_75_or_torchruns_teardown_after_the_checkpointed_step():
    judge = gpu_check.judge_rank_exits
    assert judge({0: 75, 1: 75}, {0: 5, 1: 5}, 5, 2) == ([], [])
    problems, notes = judge({0: 75, 1: -15}, {0: 5, 1: 5}, 5, 2)  # the race torchrun's agent makes
    assert not problems and "rank 1" in notes[0] and "-15" in notes[0]
    assert judge({0: 75, 1: -15}, {0: 5}, 5, 2)[0] == ["rank 1 exited -15, expected 75 (no 'finished step 5' line)"]
    assert judge({0: 1}, {}, 5, 1)[0] == ["rank 0 exited 1, expected 75 (no 'finished step 5' line)"]
    assert "expected 2 process(es)" in judge({0: 75}, {0: 5}, 5, 2)[0][0]


# --------------------------------------------------------------------------- steps in children


def _child(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def test_a_step_that_raises_or_hangs_is_reported_and_the_others_still_run(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "KILL_GRACE_S", 1.0)
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    out.mkdir()
    row = {"config": "a", "x": 1.5, "status": "ok"}
    columns = [["config", "configuration"], ["x", "x", ".2f"], ["status", "status"]]

    def write(name: str, status: str) -> str:  # what a child's StepContext writes
        record = {"name": name, "status": status, "rows": [row], "columns": columns, "notes": [], "summary": []}
        return f"import json; open({str(work / (name + '.json'))!r}, 'w').write({json.dumps(json.dumps(record))})"

    scripts = {
        "first": write("first", "ok"),
        "raises": "raise RuntimeError('boom in the step')",
        # writes one row, then ignores SIGTERM and hangs: the parent must escalate to SIGKILL
        "hangs": write("hangs", "running") + "\nimport signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                                             "print('hanging', flush=True)\ntime.sleep(120)",
        "last": write("last", "ok"),
    }
    report = {"dry": False, "steps": [], "started_utc": "2026-12-01T00:00:00+00:00", "header": {"gpu": "test"}}
    gpu_check.run_all(list(scripts), lambda name, deadline: _child(scripts[name]),
                      lambda name: 4.0 if name == "hangs" else 60.0, work, out, report)
    steps = {s["name"]: s for s in report["steps"]}
    assert [s["name"] for s in report["steps"]] == ["first", "raises", "hangs", "last"]
    assert steps["first"]["status"] == "ok" and steps["last"]["status"] == "ok"
    assert steps["raises"]["status"] == "failed"
    assert "exit 1" in steps["raises"]["detail"] and "RuntimeError: boom in the step" in steps["raises"]["detail"]
    assert steps["hangs"]["status"] == "failed" and "timed out after 4 s" in steps["hangs"]["detail"]
    assert steps["hangs"]["rows"] == [row]  # what it measured before the limit is kept
    assert steps["hangs"]["seconds"] < 30
    written = json.loads((out / "gpu_check.json").read_text())
    assert [s["status"] for s in written["steps"]] == ["ok", "failed", "failed", "ok"]
    md = (out / "gpu_check.md").read_text()
    assert "**failed**: child exit 1: RuntimeError: boom in the step" in md
    assert md.count("| a | 1.50 | ok |") == 3
    assert "hanging" in (out / "gpu_check.log").read_text()


def test_a_step_the_total_budget_no_longer_covers_is_skipped(tmp_path):
    report = {"dry": False, "steps": []}
    gpu_check.run_all(["memory"], lambda name, deadline: _child("pass"), lambda name: 60.0, tmp_path, tmp_path,
                      report, total_budget_s=1.0)
    assert report["steps"][0]["status"] == "skipped" and "budget" in report["steps"][0]["detail"]


# --------------------------------------------------------------------------- the carry


def _fake_wheel(folder: Path, dist: str, module: str) -> Path:
    """A minimal pure-Python wheel that pip installs offline."""
    path = folder / f"{dist}-0.1-py3-none-any.whl"
    info = f"{dist}-0.1.dist-info"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{module}.py", "VALUE = 42\n")
        z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    return path


def test_wheels_to_install_takes_only_what_does_not_import(tmp_path):
    for name in ("bitsandbytes-0.50.2-py3-none-manylinux_2_24_x86_64.whl", "PyYAML-6.0.4-cp311-cp311-x.whl",
                 "pyyaml-6.0.4-cp312-cp312-x.whl", "nvidia_ml_py-13.6-py3-none-any.whl"):
        (tmp_path / name).write_bytes(b"")
    modules = {"pyyaml": "yaml", "nvidia-ml-py": "pynvml"}
    install, present = gpu_check.wheels_to_install(tmp_path, modules, present=lambda m: m in ("yaml",))
    assert install == ["bitsandbytes", "nvidia-ml-py"] and present == ["pyyaml"]


def test_install_carried_installs_a_missing_package_offline_and_reports_it(tmp_path):
    carry = tmp_path / "carry"
    (carry / "wheels").mkdir(parents=True)
    _fake_wheel(carry / "wheels", "gpucheck_demo_pkg", "gpucheck_demo_mod")
    (carry / "manifest.json").write_text(json.dumps({"created_utc": "today", "wheels": [
        {"dist": "gpucheck-demo-pkg", "module": "gpucheck_demo_mod"}]}))
    site = tmp_path / "site"
    try:
        result = gpu_check.install_carried(carry, site)
        assert result["installed"] == ["gpucheck-demo-pkg"] and not result["failed"], result
        assert (site / "gpucheck_demo_mod.py").is_file()
        assert "installed gpucheck-demo-pkg" in result["summary"]
        assert gpu_check.install_carried(carry, tmp_path / "site2")["present"] == ["gpucheck-demo-pkg"]
    finally:
        sys.path[:] = [p for p in sys.path if not p.startswith(str(tmp_path))]


def test_carry_budget_is_enforced_and_names_the_largest_file(tmp_path):
    (tmp_path / "big.whl").write_bytes(b"x" * 2000)
    (tmp_path / "small.json").write_bytes(b"x" * 10)
    assert gpu_wheels.check_budget(tmp_path, budget=5000) == 2010
    with pytest.raises(gpu_wheels.CarryTooLarge, match=r"big\.whl"):
        gpu_wheels.check_budget(tmp_path, budget=1000)
    assert gpu_wheels.CARRY_BUDGET_BYTES <= 60e6  # the device copies 64 MiB in all, the working tree included


def test_prune_keeps_one_version_per_distribution(tmp_path):
    for name in ("peft-0.21.2-py3-none-any.whl", "peft-0.20.0-py3-none-any.whl", "PyYAML-6.0.4-cp311-cp311-x.whl",
                 "old_pkg-1.0-py3-none-any.whl"):
        (tmp_path / name).write_bytes(b"")
    removed = gpu_wheels.prune(tmp_path, {"peft": "0.21.2", "pyyaml": None})
    assert sorted(removed) == ["old_pkg-1.0-py3-none-any.whl", "peft-0.20.0-py3-none-any.whl"]


# --------------------------------------------------------------------------- the dry run


@pytest.mark.slow
def test_dry_run_reaches_every_steps_measurement_code_and_writes_dry_rows(tmp_path):
    """~1.5 min on 2 cores: the gas-detection data is prepared as on the CPU machine (TauREx, ~25 s),
    then every step runs in its child process on the CPU."""
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--dry", "--out", str(out)],
                         cwd=REPO, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, (res.stdout + res.stderr)[-6000:]
    report = json.loads((out / "gpu_check.json").read_text())
    md = (out / "gpu_check.md").read_text()
    assert report["dry"] is True and "DRY RUN" in md
    assert [s["name"] for s in report["steps"]] == list(gpu_check.STEPS)
    imported: set[str] = set()
    for step in report["steps"]:
        name = step["name"]
        assert step["status"] == "dry", (name, step.get("detail"), (out / "gpu_check.log").read_text()[-4000:])
        assert step["reached"], f"{name} never reached its measurement code"
        dry_rows = [r for r in step["rows"] if r["status"] == "dry"]
        assert dry_rows, f"{name} wrote no row marked dry"
        assert f"## {gpu_check.TITLES[name]}\n\n**dry**" in md
        section = md.split(f"## {gpu_check.TITLES[name]}")[1].split("\n## ")[0]
        table_rows = [ln for ln in section.splitlines() if re.search(r"\| dry(: [^|]*)? \|$", ln)]
        assert len(table_rows) == len(dry_rows), (name, section)
        imported |= set(step["imports"])
    # what the steps measured: the CPU comparison, the loops, the QLoRA checks, the preemption and resume
    steps = {s["name"]: s for s in report["steps"]}
    cpu_rows = [r for r in steps["memory"]["rows"] if r.get("measured_gb")]
    assert len(cpu_rows) == len(gpu_check.DRY_MEMORY_CONFIGS)
    assert all(abs(r["estimate_err_pct"]) < 5 for r in cpu_rows)
    assert all(r.get("ours") and r.get("plain") and r.get("compute") for r in steps["throughput"]["rows"])
    qlora = steps["qlora"]["rows"][0]
    assert qlora["base_unchanged"] is True and qlora["nf4_layers"] == 28
    for row in steps["preemption"]["rows"]:
        # 75 from each process; under torchrun a rank may be ended by the agent (-15) after its checkpointed step
        assert row["interrupted"] and row["resume_exit"] == 0, row
        assert row["exit_codes"].split(" (")[0] in ("75", "75, 75", "75, -15", "-15, 75"), row
        assert row["resumed_from"] == row["stopped_at"] and row["final_step"] == row["stopped_at"] + 3
    # the carry list is sound: every third-party module the code paths import is carried or assumed present
    carried = {w.module for w in gpu_wheels.WHEELS}
    unknown = imported - carried - set(gpu_wheels.ASSUMED_ON_DEVICE)
    assert not unknown, f"imported by the check but neither carried nor assumed on the device: {sorted(unknown)}"
