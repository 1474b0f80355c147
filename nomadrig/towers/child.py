"""A tower run in a fresh process: `python -m nomadrig.towers.child REQUEST REPORT`.

Why: the `Tower` dynamic provider runs inside a gRPC server process. ansible-runner starts ansible-playbook
through pexpect, which forks that threaded process; now and then the child was dead on a signal before its
first event (rc None, no output: twice in ~40 runs, then on both tries of one create). A process that has
never loaded gRPC forks cleanly, so the provider hands the run to this one. REQUEST is a JSON file written by
`tower.run_in_child`; the report is written to REPORT whole (renamed into place), as the run saves its own.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from nomadrig.team.model import Team
from nomadrig.towers import RunOptions, run


def main(request_file: str, report_file: str) -> int:
    request = json.loads(Path(request_file).read_text())
    options = RunOptions(
        ssh_key_file=Path(request["ssh_key_file"]) if request["ssh_key_file"] else None,
        overrides=request["overrides"],
        upgrade=request["upgrade"],
        runs_dir=Path(request["runs_dir"]),
        project_root=Path(request["project_root"]),
        strict_host_keys=request["strict_host_keys"],
        fetch_public_key=request["fetch_public_key"],
    )
    report = run(Team.model_validate(request["team"]), request["tower"], request["mode"], options)
    partial = Path(report_file + ".partial")
    partial.write_text(report.to_json())
    partial.rename(report_file)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
