"""Write (or, with --check, compare) each role's README variable table from its meta/argument_specs.yml.

A role's variables are declared once, in ``meta/argument_specs.yml`` (Ansible
checks them at run time); the README's table is generated from there, between
two markers, so the documentation cannot drift from what the role accepts.
Text outside the markers is the role's own prose and is kept. A role without a
README gets one: its title, the spec's short description and description, and
the table.

    python scripts/role_readmes.py           # rewrite the tables
    python scripts/role_readmes.py --check   # exit 1 and name the READMEs that differ
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

ROLES = Path(__file__).resolve().parents[1] / "roles"
BEGIN = "<!-- BEGIN variables: generated from meta/argument_specs.yml by scripts/role_readmes.py; do not edit -->"
END = "<!-- END variables -->"


def _cell(value: Any) -> str:
    """A Markdown table cell: code for values, pipes escaped (Jinja filters), one line."""
    text = " ".join(str(value).split())
    return text.replace("|", "\\|")


def _default(value: Any) -> str:
    """The default as the YAML that would set it: ``true``, ``""``, ``[]``."""
    shown = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()
    return f"`{_cell(shown)}`"


def variable_table(spec: dict[str, Any]) -> str:
    """The README block for one role's ``main`` entry point: its table, or a sentence where it takes no variables."""
    if not spec.get("options"):
        return "\n".join([BEGIN, "", "The role takes no variables.", "", END])
    rows = ["| variable | type | default | what it is |", "| --- | --- | --- | --- |"]
    for name, option in sorted((spec.get("options") or {}).items()):
        kind = option.get("type", "str")
        if kind == "list" and option.get("elements"):
            kind = f"list of {option['elements']}"
        if option.get("choices"):
            kind += f" ({', '.join(map(str, option['choices']))})"
        default = "required" if option.get("required") else _default(option.get("default", ""))
        description = option.get("description", "")
        if isinstance(description, list):
            description = " ".join(description)
        rows.append(f"| `{name}` | {_cell(kind)} | {default} | {_cell(description)} |")
    return "\n".join([BEGIN, "", *rows, "", END])


def _new_readme(role: str, spec: dict[str, Any]) -> str:
    description = spec.get("description") or []
    if isinstance(description, str):
        description = [description]
    bullets = "".join(f"- {' '.join(line.split())}\n" for line in description)
    return f"# {role}\n\n{spec.get('short_description', '')}\n\n{bullets}\n## Variables\n\n"


def readme_text(role_dir: Path) -> str:
    """What the role's README should hold: its own prose, and the table generated now."""
    spec = yaml.safe_load((role_dir / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]
    readme = role_dir / "README.md"
    current = readme.read_text() if readme.is_file() else _new_readme(role_dir.name, spec)
    table = variable_table(spec)
    if BEGIN in current and END in current:
        head, rest = current.split(BEGIN, 1)
        return head + table + rest.split(END, 1)[1]
    if "## Variables" not in current:
        current = current.rstrip("\n") + "\n\n## Variables\n\n"
    return current.rstrip("\n") + "\n\n" + table + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 where a README differs")
    args = parser.parse_args(argv)
    stale = []
    for role_dir in sorted(p for p in ROLES.iterdir() if (p / "meta" / "argument_specs.yml").is_file()):
        wanted = readme_text(role_dir)
        readme = role_dir / "README.md"
        if not readme.is_file() or readme.read_text() != wanted:
            stale.append(readme)
            if not args.check:
                readme.write_text(wanted)
    if args.check and stale:
        print("out of date (run python scripts/role_readmes.py): " + ", ".join(map(str, stale)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
