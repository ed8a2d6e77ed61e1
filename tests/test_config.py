import dataclasses

import pytest

from astrobio_lib import config
from astrobio_lib.config import ConfigError
from astrobio_lib.pipeline import discover


def test_defaults_are_valid():
    cfg = config.from_mapping({})
    assert cfg.train.max_steps == 100  # the smoke run: >= 100 steps with accumulation 4
    assert cfg.flat()["precision"] == "fp32"


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


def test_every_section_field_has_help():
    for info in config.all_fields().values():
        assert info.help, info.name
    assert {f.name for f in dataclasses.fields(config.Config)} >= {"run", "data", "train"}
