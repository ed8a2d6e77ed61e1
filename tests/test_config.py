import dataclasses
import re
from pathlib import Path

import pytest

from astrobio_lib import config
from astrobio_lib.config import ConfigError
from astrobio_lib.pipeline import discover

REPO = Path(__file__).resolve().parent.parent


def test_defaults_are_valid_and_are_the_smoke_run():
    """The defaults (what a notebook opened in JupyterLab runs) are params/smoke.yaml (what `make run`
    trains): the same experiment either way."""
    cfg = config.from_mapping({})
    assert cfg.flat()["precision"] == "fp32" and cfg.train.task == "gas_detection"
    smoke = config.load_yaml(REPO / "params" / "smoke.yaml")
    defaults = cfg.flat()
    differ = {k: (v, defaults[k]) for k, v in smoke.items() if defaults[k] != v}
    assert not differ, f"params/smoke.yaml differs from the configuration's defaults: {differ}"


def test_every_field_declares_how_it_behaves_on_resume():
    unclassified = [n for n, info in config.all_fields().items() if info.resume not in config.RESUME_CLASSES]
    assert not unclassified, f"fields without resume=structural|data|safe|irrelevant: {unclassified}"
    from astrobio_lib.train import checkpoint as ckpt

    assert {"task", "seed", "model_preset", "precision"} <= set(ckpt.structural_keys())
    assert "gas_train_draws" in ckpt.structural_keys(("gas_train_draws",))
    assert {"learning_rate", "max_steps"} <= set(ckpt.safe_keys())
    assert not set(ckpt.safe_keys()) & set(ckpt.structural_keys(config.keys_by_resume("data")))


def test_float_keys_refuse_infinity():
    for key in ("weight_decay", "learning_rate", "max_hours", "grad_clip"):
        with pytest.raises(ConfigError, match=f"{key}=inf.*finite"):
            config.from_mapping({key: float("inf")})
    with pytest.raises(ConfigError, match="finite"):
        config.from_mapping({"weight_decay": float("-inf")})


def test_task_choices_come_from_the_registry():
    from astrobio_lib import tasks

    assert config.all_fields()["task"].valid_choices() == tasks.names()
    with pytest.raises(ConfigError, match="task='nope'.*gas_detection, habitability"):
        config.from_mapping({"task": "nope"})


def test_unknown_key_names_the_nearest_valid_key():
    with pytest.raises(ConfigError, match=r"'max_step'.*params/x.yaml.*did you mean 'max_steps'"):
        config.from_mapping({"max_step": 3}, where="params/x.yaml")


@pytest.mark.parametrize("key, value, pattern", [
    ("max_steps", "10", r"max_steps='10'.*expected int, got str"),
    ("max_steps", True, r"expected int, got bool"),
    ("max_steps", 0, r"max_steps=0.*must be >= 1"),
    ("learning_rate", 2.0, r"must be <= 1.0"),
    ("learning_rate", float("nan"), r"must be a number"),
    ("precision", "fp8", r"precision='fp8'.*one of fp32, bf16-mixed"),
    ("catalog_path", 3, r"expected Optional\[str\]"),
])
def test_bad_values_are_refused_with_the_key(key, value, pattern):
    with pytest.raises(ConfigError, match=pattern):
        config.from_mapping({key: value})


def test_int_is_accepted_for_float_and_converted():
    cfg = config.from_mapping({"gpu_memory_gb": 24})
    assert cfg.hardware.gpu_memory_gb == 24.0 and isinstance(cfg.hardware.gpu_memory_gb, float)


def test_from_namespace_ignores_other_names():
    cfg = config.from_namespace({"max_steps": 7, "pd": object(), "_": 1})
    assert cfg.train.max_steps == 7


def test_load_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        config.load_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("max_steps: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.load_yaml(bad)
    nested = tmp_path / "nested.yaml"
    nested.write_text("train:\n  max_steps: 3\n")
    with pytest.raises(ConfigError, match="nested mapping"):
        config.load_yaml(nested)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        config.load_yaml(listing)


def test_notebook_parameters_and_dataclasses_agree():
    """Every dataclass field is declared by a notebook with the same type, default and help;
    every notebook parameter is a dataclass field."""
    fields = config.all_fields()
    declared = {}
    for spec in discover():
        for name, p in spec.params.items():
            assert name in fields, f"{spec.name} declares {name!r}, which config.py does not define"
            info = fields[name]
            assert p.type == info.type, f"{spec.name}: {name} is {p.annotation}, config says {info.type}"
            assert p.default == info.default, f"{spec.name}: {name} default {p.default!r} != {info.default!r}"
            assert p.help == info.help, f"{spec.name}: {name} help differs from config.py"
            declared.setdefault(name, spec.name)
    assert set(fields) == set(declared), f"declared by no notebook: {set(fields) - set(declared)}"


def test_parameters_cells_are_generated_from_the_configuration():
    """Each notebook's parameters cell is exactly what the configuration generates for its keys
    (scripts/sync_notebook_parameters.py writes them): one source of types, defaults and help."""
    for path in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.py")):
        cell = re.search(r'# %% tags=\["parameters"\]\n(.*?)\n\n# %%', path.read_text(), re.S).group(1)
        keys = [line.split(":", 1)[0] for line in cell.splitlines() if line.strip()]
        assert cell == config.parameters_cell(keys), (f"{path.name}: parameters cell differs from the configuration: "
                                                      f"run scripts/sync_notebook_parameters.py")


def test_every_section_field_has_help():
    for info in config.all_fields().values():
        assert info.help, info.name
    assert {f.name for f in dataclasses.fields(config.Config)} >= {"run", "data", "train"}
