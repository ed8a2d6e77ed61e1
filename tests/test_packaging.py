"""pyproject.toml and environment.yml must install the same set with the same lower bounds."""

import re
import tomllib

import yaml

from .conftest import REPO


def _normalise(req: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", req)
    return m.group(1).lower().replace("_", "-"), m.group(2).replace(" ", "")


def test_environment_yml_mirrors_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = dict(_normalise(r) for r in project["dependencies"])
    wanted.update(_normalise(r) for r in project["optional-dependencies"]["dev"])
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    have = dict(_normalise(r) for r in pip)
    assert have == wanted, {"only in environment.yml": set(have.items()) - set(wanted.items()),
                            "only in pyproject.toml": set(wanted.items()) - set(have.items())}
    assert "python=3.11" in env["dependencies"]


def test_gpu_extra_is_optional_flash_attn():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert any(r.startswith("flash-attn") for r in project["optional-dependencies"]["gpu"])
    assert not any(r.startswith("flash-attn") for r in project["dependencies"])
    # mentioned (commented) in environment.yml, never installed by default
    assert "# - flash-attn" in (REPO / "environment.yml").read_text()


def test_every_dependency_has_a_lower_bound():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for req in project["dependencies"]:
        assert ">=" in req, f"{req}: pin a lower bound"
