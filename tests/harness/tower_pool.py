"""Converge the test towers in the background while the rest of the suite runs.

A first ``tower apply`` from bare takes 8-19 minutes and spends most of it
waiting on apt, dpkg and SSH round trips, not on the CPU; the suite's other
tests are CPU-bound on one core. So at the start of the session the pool boots
one container per release the collected tests need and starts its first apply
in a child process (``python -m tests.harness.tower_pool``); the container
tests, ordered after the others (tests/conftest.py), then find their tower
converged or wait for the rest of the apply.

A child process, not a thread: tests monkeypatch ``subprocess``, environment
variables and nomadrig's own functions, and an apply running in this process
would see those patches. The child runs the same ``nomadrig.towers.run`` with
the same options, from a copy of the environment taken before any test ran.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from nomadrig import towers
from nomadrig.team.model import Team
from tests.harness.container import DebianContainer
from tests.harness.towers import (
    TOWER_RELEASES,
    ConvergedTower,
    TowerRelease,
    container_overrides,
    container_team,
    proxy_bytes_for,
    tower_container_spec,
)
from tests.harness.wheels import cpu_jax_wheels, wheel_dir_size_mb

REPO = Path(__file__).resolve().parents[2]


class ConvergeFailed(Exception):
    """The background apply could not report at all (the child crashed); its log says why."""


@dataclass
class ConvergeJob:
    """One release's container and the child process applying the tower playbook to it."""

    release: TowerRelease
    container: DebianContainer
    team: Team
    options: towers.RunOptions
    ssh_key: Path
    process: subprocess.Popen[bytes]
    result_file: Path
    log_file: Path
    since: float

    def wait(self) -> ConvergedTower:
        """Block until the first apply has ended; its report, whether it succeeded or not."""
        self.process.wait()
        if not self.result_file.exists():
            tail = self.log_file.read_text(errors="replace")[-4000:] if self.log_file.exists() else "(no log)"
            raise ConvergeFailed(
                f"{self.release.os}: the first apply (pid {self.process.pid}) exited {self.process.returncode} "
                f"without a report; {self.log_file} ends:\n{tail}"
            )
        result = json.loads(self.result_file.read_text())
        first = towers.RunReport.from_json(result["report"])
        return ConvergedTower(
            self.release, self.container, self.team, self.options, self.ssh_key, first, result["seconds"],
            download_mb=proxy_bytes_for(self.container.ip, self.since) / 1e6,
            wheels_mb=wheel_dir_size_mb(cpu_jax_wheels(self.release.debian)),
            bare_check=towers.RunReport.from_json(result["bare_check"]),
        )  # fmt: skip

    def close(self) -> None:
        """Stop the apply if it still runs (its whole process group), then the container; drop the tree."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.container.close()
        shutil.rmtree(self.container.workdir, ignore_errors=True)


def start_converge(release: TowerRelease, ssh_key: Path, work_root: Path) -> ConvergeJob:
    """Boot a bare container of release and start, in a child process, its `tower check` and first full apply.

    Returns at once.
    """
    workdir = work_root / f"tower-{release.codename}-{time.time_ns()}"
    container = DebianContainer(tower_container_spec(release.codename), workdir, ssh_key)
    container.boot(timeout=120)
    try:
        team = container_team(release, container, ssh_key)
        runs_dir = workdir.with_name(workdir.name + "-runs")  # kept: the runs are the evidence of a failure
        options = towers.RunOptions(
            ssh_key_file=ssh_key, overrides=container_overrides(release), runs_dir=runs_dir, strict_host_keys=False
        )
        job_dir = workdir.with_name(workdir.name + "-job")
        job_dir.mkdir(parents=True)
        request = job_dir / "request.json"
        request.write_text(
            json.dumps(
                {
                    "team": team.model_dump(mode="json"),
                    "tower": team.towers[0].name,
                    "ssh_key": str(ssh_key),
                    "overrides": dict(options.overrides),
                    "runs_dir": str(runs_dir),
                }
            )
        )
        log_file, result_file = job_dir / "apply.log", job_dir / "result.json"
        since = time.time()
        with open(log_file, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "tests.harness.tower_pool", str(request), str(result_file)],
                cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
    except BaseException:
        container.close()
        raise
    return ConvergeJob(release, container, team, options, ssh_key, process, result_file, log_file, since)


class TowerPool:
    """The session's converged towers, one per release, started early and handed out when a test needs one."""

    def __init__(self, ssh_key: Path, work_root: Path) -> None:
        self.ssh_key = ssh_key
        self.work_root = work_root
        self._jobs: dict[str, ConvergeJob] = {}
        self._towers: dict[str, ConvergedTower] = {}

    def start(self, codename: str) -> None:
        """Boot release's container and start its first apply, unless that is done or under way."""
        if codename not in self._jobs:
            self._jobs[codename] = start_converge(TOWER_RELEASES[codename], self.ssh_key, self.work_root)

    def get(self, codename: str) -> ConvergedTower:
        """Release's converged tower: started now if nobody started it, waited for if it is still applying."""
        if codename not in self._towers:
            self.start(codename)
            self._towers[codename] = self._jobs[codename].wait()
        return self._towers[codename]

    def close(self) -> None:
        """Stop every apply still running and every container; called once, at the end of the session."""
        for job in self._jobs.values():
            job.close()
        self._jobs.clear()
        self._towers.clear()


def main(request_file: str, result_file: str) -> int:
    """The child: one first apply as the request says; writes the report and its duration, exits 0 if it ran."""
    request = json.loads(Path(request_file).read_text())
    team = Team.model_validate(request["team"])
    options = towers.RunOptions(
        ssh_key_file=Path(request["ssh_key"]),
        overrides=request["overrides"],
        runs_dir=Path(request["runs_dir"]),
        strict_host_keys=False,
    )
    # The dry run of a bare machine first (a user's first command is often `tower check`), then the apply.
    bare_check = towers.run(team, request["tower"], "check", options)
    print(bare_check.summary(), flush=True)
    started = time.monotonic()
    report = towers.run(team, request["tower"], "apply", options)
    seconds = time.monotonic() - started
    print(report.summary(), flush=True)
    partial = Path(result_file + ".partial")
    result = {"report": report.to_json(), "seconds": seconds, "bare_check": bare_check.to_json()}
    partial.write_text(json.dumps(result))
    partial.rename(result_file)  # whole or absent: the parent reads it only after the child ended
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
