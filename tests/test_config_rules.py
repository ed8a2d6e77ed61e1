"""Cross-field rules of the plan: every combination a later module would refuse is refused by
the configuration itself — and so by the pipeline before any notebook runs."""

import json
import subprocess
import sys

import pytest

from astrobio_lib import config

from .conftest import REPO

REFUSED = [
    ({"sharding": "none", "cpu_offload": "params_optimizer"}, ["cpu_offload", "sharding"]),
    ({"cpu_offload": "optimizer"}, ["cpu_offload: optimizer"]),
    ({"llm_adapter": "qlora"}, ["llm_adapter: qlora"]),
    ({"llm_adapter": "lora"}, ["llm_adapter: lora"]),
    ({"precision": "fp16-mixed", "gpu_name": "cpu"}, ["precision: fp16-mixed", "gpu_name: cpu"]),
    ({"task": "habitability", "text_max_len": 1024, "model_preset": "small", "gpu_name": "RTX A5000",
      "gpu_memory_gb": 24.0}, ["text_max_len: 1024", "small", "512 tokens"]),
    ({"task": "habitability", "text_max_len": 512, "model_preset": "tiny"}, ["text_max_len: 512", "tiny", "256 tokens"]),
    ({"task": "gas_detection", "llm_checkpoint": "/models/llama"}, ["task: gas_detection has no text", "llm_checkpoint"]),
    ({"task": "gas_detection", "gas_planets": 0}, ["gas_planets: 0"]),
    ({"catalog_source": "snapshot", "catalog_path": "/x.csv"}, ["catalog_path: /x.csv", "catalog_source: file"]),
    ({"nproc": 2, "sharding": "none"}, ["nproc: 2", "sharding: none", "unsynchronised"]),
    ({"nproc": 4, "sharding": "ddp", "gpu_name": "RTX A5000", "gpus_per_node": 2, "gpu_memory_gb": 24.0},
     ["nproc: 4", "gpus_per_node: 2"]),
    ({"gpu_name": "RTX A5000", "gpu_memory_gb": 0.0}, ["gpu_memory_gb"]),
    ({"gpu_name": "RTX A500", "gpu_memory_gb": 24.0}, ["gpu_name: 'RTX A500'", "did you mean 'RTX A5000'"]),
]


@pytest.mark.parametrize("values,named", REFUSED, ids=[str(v) for v, _ in REFUSED])
def test_inconsistent_plans_are_refused_naming_the_keys(values, named):
    with pytest.raises(config.ConfigError) as err:
        config.from_mapping(values, where="params/x.yaml")
    msg = str(err.value)
    assert "params/x.yaml" in msg
    for word in named:
        assert word in msg, (word, msg)


def test_consistent_plans_pass():
    config.from_mapping({"nproc": 2, "sharding": "ddp"})  # two gloo ranks on CPU
    config.from_mapping({"sharding": "fsdp2", "cpu_offload": "params_optimizer"})  # one process: its own group
    config.from_mapping({"text_max_len": 512, "model_preset": "small"})
    for path in sorted((REPO / "params").glob("*.yaml")):
        config.from_mapping(config.load_yaml(path), where=str(path))


def test_yaml_exponent_without_a_dot_is_a_float(tmp_path):
    """Fault finding: `learning_rate: 3e-4` was read as the string '3e-4' (YAML 1.1)."""
    p = tmp_path / "p.yaml"
    p.write_text("learning_rate: 3e-4\nmax_steps: 10\nweight_decay: 1E-2\n")
    values = config.load_yaml(p)
    assert values == {"learning_rate": 3e-4, "max_steps": 10, "weight_decay": 0.01}
    assert isinstance(values["max_steps"], int)
    assert config.from_mapping(values).train.learning_rate == 3e-4
    assert config.parse_yaml_value("5e-5") == 5e-5 and config.parse_yaml_value("12") == 12


@pytest.mark.slow
def test_pipeline_refuses_an_inconsistent_plan_before_any_notebook_runs(tmp_path):
    params = tmp_path / "bad.yaml"
    params.write_text("nproc: 2\nsharding: none\n")
    res = subprocess.run([sys.executable, "-m", "astrobio_lib.pipeline", str(params), "--outputs",
                          str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2
    assert "nproc: 2 with sharding: none" in res.stderr
    assert not (tmp_path / "out").exists(), "nothing is written before the plan is valid"
    res = subprocess.run([sys.executable, "-m", "astrobio_lib.pipeline", "params/smoke.yaml", "--run-name", "",
                          "--outputs", str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "--run-name is empty" in res.stderr
    assert not (tmp_path / "out").exists()


def test_notebook_namespace_refuses_injected_typos_but_not_imports():
    import typing

    ns = {"max_steps": 5, "Optional": typing.Optional, "INTERRUPTED_EXIT": 75, "In": [], "Out": {}, "_i1": "x",
          "json": json}
    assert config.from_namespace(ns).train.max_steps == 5
    with pytest.raises(config.ConfigError, match=r"'lerning_rate' \(did you mean 'learning_rate'\?\)"):
        config.from_namespace({**ns, "lerning_rate": 0.1})
