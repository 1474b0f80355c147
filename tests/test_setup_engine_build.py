"""`scripts/setup.sh --test` leaves a built engine; with --engine-background the test run waits for it.

The real setup.sh runs in a scratch copy of the checkout whose build-engine.sh
is a stand-in that waits for a gate file (so a test controls when "the build"
ends, without any sleep sized for a machine) and whose .venv/bin/python accepts
pip's calls and does nothing. What setup.sh writes is then read by the real
consumer, tests/harness/engine_build.py, as the test run does.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.harness.engine_build import EngineBuildFailed, wait_for_engine_build

REPO = Path(__file__).resolve().parents[1]

FAKE_BUILD = """#!/usr/bin/env bash
echo "build-engine: building (fake) ..."
while [[ ! -f "$GATE" ]]; do sleep 0.05; done
echo "build-engine: fake build ends with exit ${FAKE_BUILD_RC:-0}"
exit "${FAKE_BUILD_RC:-0}"
"""


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch checkout: the real setup.sh, a gated stand-in build, a no-op venv python and a `go` on PATH."""
    root = tmp_path / "checkout"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "setup.sh", root / "scripts" / "setup.sh")
    (root / "scripts" / "build-engine.sh").write_text(FAKE_BUILD)
    venv_bin = root / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    tools = tmp_path / "tools"
    tools.mkdir()
    for executable in (venv_bin / "python", tools / "go"):
        executable.write_text("#!/bin/sh\nexit 0\n")
        executable.chmod(0o755)
    monkeypatch.setenv("GATE", str(tmp_path / "gate"))
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    return root


def setup(checkout: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(checkout / "scripts" / "setup.sh"), *args],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def build_dir(checkout: Path) -> Path:
    return checkout / ".cache" / "engine-build"


def open_gate() -> None:
    Path(os.environ["GATE"]).touch()


def test_setup_test_waits_for_the_engine_build_and_shows_its_output(checkout: Path) -> None:
    open_gate()
    result = setup(checkout, "--test")
    assert result.returncode == 0, result.stderr
    assert "fake build ends with exit 0" in result.stdout
    assert (build_dir(checkout) / "exit").read_text().strip() == "0"


def test_setup_test_fails_when_the_engine_build_fails(checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_BUILD_RC", "3")
    open_gate()
    result = setup(checkout, "--test")
    assert result.returncode == 3
    assert "fake build ends with exit 3" in result.stdout
    assert "the Pulumi CLI build failed (exit 3)" in result.stderr


def test_background_build_returns_at_once_and_the_test_run_waits_for_it(checkout: Path) -> None:
    result = setup(checkout, "--test", "--engine-background")
    assert result.returncode == 0, result.stderr
    assert not (build_dir(checkout) / "exit").exists()  # still building: the gate is closed
    said: list[str] = []

    def say(line: str) -> None:
        said.append(line)
        open_gate()  # the build may end only once the test run says it waits

    wait_for_engine_build(build_dir(checkout), say=say, poll_s=0.05, timeout_s=60)
    assert (build_dir(checkout) / "exit").read_text().strip() == "0"
    assert "waiting for the Pulumi CLI build" in said[0] and str(build_dir(checkout) / "log") in said[0]
    assert "finished" in said[-1]


def test_a_failed_background_build_fails_the_wait_with_its_log(checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_BUILD_RC", "7")
    open_gate()
    assert setup(checkout, "--test", "--engine-background").returncode == 0
    with pytest.raises(EngineBuildFailed) as failed:
        wait_for_engine_build(build_dir(checkout), say=lambda _: None, poll_s=0.05, timeout_s=60)
    message = str(failed.value)
    assert "failed (exit 7)" in message and "fake build ends with exit 7" in message
    assert "scripts/setup.sh --test" in message  # the fix


def test_a_killed_background_build_fails_the_wait(checkout: Path) -> None:
    assert setup(checkout, "--test", "--engine-background").returncode == 0
    pid = int((build_dir(checkout) / "pid").read_text())
    os.kill(pid, signal.SIGKILL)  # the job dies before it can write its exit status
    with pytest.raises(EngineBuildFailed, match="ended without writing its exit status"):
        wait_for_engine_build(build_dir(checkout), say=lambda _: None, poll_s=0.05, timeout_s=60)
    open_gate()  # lets the orphaned stand-in build end


def test_a_second_setup_reuses_a_build_still_running(checkout: Path) -> None:
    assert setup(checkout, "--test", "--engine-background").returncode == 0
    first = (build_dir(checkout) / "pid").read_text()
    again = setup(checkout, "--test", "--engine-background")
    assert "still running" in again.stdout
    assert (build_dir(checkout) / "pid").read_text() == first
    open_gate()
    wait_for_engine_build(build_dir(checkout), say=lambda _: None, poll_s=0.05, timeout_s=60)


def test_no_background_build_means_no_wait(tmp_path: Path) -> None:
    wait_for_engine_build(tmp_path / "engine-build", say=lambda line: pytest.fail(line), timeout_s=0)


def test_setup_refuses_an_unknown_option(checkout: Path) -> None:
    result = setup(checkout, "--tests")
    assert result.returncode == 2
    assert "unknown option '--tests'" in result.stderr and "--test" in result.stderr
