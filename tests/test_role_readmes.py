"""Each role's README lists the variables its meta/argument_specs.yml declares, so the two cannot drift."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location("role_readmes", REPO / "scripts" / "role_readmes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ROLES = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "meta" / "argument_specs.yml").is_file())


def test_every_role_has_a_readme_generated_from_its_current_specs():
    assert _generator().main(["--check"]) == 0, "run: python scripts/role_readmes.py"


@pytest.mark.parametrize("role", ROLES)
def test_the_readme_names_every_declared_variable_and_no_other(role):
    specs = yaml.safe_load((REPO / "roles" / role / "meta" / "argument_specs.yml").read_text())
    declared = set(specs["argument_specs"]["main"].get("options") or {})
    table = (REPO / "roles" / role / "README.md").read_text().split("<!-- BEGIN variables")[1]
    listed = {line.split("`")[1] for line in table.splitlines() if line.startswith("| `")}
    assert listed == declared


def test_a_variable_added_to_the_specs_makes_the_check_fail(tmp_path, monkeypatch):
    roles = tmp_path / "roles"
    shutil.copytree(REPO / "roles" / "verify", roles / "verify")
    generator = _generator()
    monkeypatch.setattr(generator, "ROLES", roles)
    assert generator.main(["--check"]) == 0
    specs_file = roles / "verify" / "meta" / "argument_specs.yml"
    specs = yaml.safe_load(specs_file.read_text())
    specs["argument_specs"]["main"]["options"]["verify_new_knob"] = {"type": "int", "default": 3,
                                                                      "description": "A new knob."}
    specs_file.write_text(yaml.safe_dump(specs))
    assert generator.main(["--check"]) == 1
    assert generator.main([]) == 0 and generator.main(["--check"]) == 0
    assert "| `verify_new_knob` | int | `3` | A new knob. |" in (roles / "verify" / "README.md").read_text()
