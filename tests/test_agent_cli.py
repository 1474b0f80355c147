"""``nomadrig-agent`` as the timer and users run it, and the install bundle that puts it on a box.

Every run here is a real process over a fake root (``NOMADRIG_AGENT_ROOT``):
fake ``/proc`` files, a stand-in ``nvidia-smi``, and stand-ins for ``wall``
and ``systemctl poweroff`` that record their arguments to files.
"""

from __future__ import annotations

import ast
import base64
import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from nomadrig.agent import bundle
from nomadrig.agent.config import AgentConfig, ConfigError
from nomadrig.agent.sampler import boot_time_seconds

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "agent"
H100 = json.loads((FIXTURES / "h100_matmul_recording.json").read_text())
TCP_HEADER = (FIXTURES / "proc_net_tcp.txt").read_text().splitlines()[0] + "\n"
TCP6_HEADER = (FIXTURES / "proc_net_tcp6.txt").read_text().splitlines()[0] + "\n"
BOOT_ID = "8732c567-d206-4e7b-923a-6403c4a6278d"


class FakeBox:
    """A quiet machine under a temporary root; tests make one signal busy where they need it."""

    def __init__(self, root: Path, **config: Any) -> None:
        self.root = root
        proc = root / "proc"
        (proc / "net").mkdir(parents=True)
        (proc / "sys" / "kernel" / "random").mkdir(parents=True)
        (proc / "net" / "tcp").write_text(TCP_HEADER)
        (proc / "net" / "tcp6").write_text(TCP6_HEADER)
        (proc / "loadavg").write_text("0.05 0.05 0.05 1/200 4242\n")
        (proc / "stat").write_text("cpu 1\ncpu0 1\ncpu1 1\n")
        (proc / "sys" / "kernel" / "random" / "boot_id").write_text(BOOT_ID + "\n")
        self.gpu_csv = root / "gpu.csv"
        self.gpu_csv.write_text(H100["idle"]["gpu_csv"])
        bin_dir = root / "stand-ins"
        bin_dir.mkdir()
        self.nvidia_smi = self.script(
            bin_dir / "nvidia-smi",
            f"""
            case "$1" in --query-gpu=*) cat '{self.gpu_csv}' ;; *) : ;; esac""",
        )
        self.wall_log = root / "wall.log"
        self.poweroff_log = root / "poweroff.log"
        wall = self.script(bin_dir / "wall", f"""printf '%s\\n' "$1" >> '{self.wall_log}'""")
        poweroff = self.script(bin_dir / "poweroff", f"""echo poweroff >> '{self.poweroff_log}'""")
        settings = {
            "nvidia_smi": str(self.nvidia_smi),
            "wall_command": [str(wall)],
            "poweroff_command": [str(poweroff)],
        }
        settings.update(config)
        self.write_config(settings)

    @staticmethod
    def script(path: Path, body: str) -> Path:
        path.write_text("#!/bin/sh\n" + "\n".join(line.strip() for line in body.strip().splitlines()) + "\n")
        path.chmod(0o755)
        return path

    def write_config(self, settings: dict[str, Any]) -> None:
        config = self.root / "etc" / "nomadrig" / "agent.json"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(json.dumps(settings))

    @property
    def state_dir(self) -> Path:
        return self.root / "var" / "lib" / "nomadrig"

    def run(self, *args: str, python: str = sys.executable, path: str | None = None) -> subprocess.CompletedProcess:
        """The agent's command line over this root; ``path`` goes first on PATH (stand-ins for box tools)."""
        env = dict(os.environ, NOMADRIG_AGENT_ROOT=str(self.root), USER="ada")
        if path:
            env["PATH"] = path + os.pathsep + env.get("PATH", "")
        env.pop("NOMADRIG_AGENT_PROC", None)
        return subprocess.run(
            [python, "-m", "nomadrig.agent", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            timeout=60,
            check=False,
        )

    def seed_quiet_history(self, minutes: int, action_at: dict[int, str] | None = None) -> None:
        """``minutes`` quiet samples, one a minute, ending a minute ago, in this boot's clocks."""
        template = H100["after"]["sample"]
        now_wall, now_boot = time.time(), boot_time_seconds()
        samples = []
        for k in range(minutes, 0, -1):
            sample = json.loads(json.dumps(template))
            sample.update(t=now_wall - 60 * k, mono=now_boot - 60 * k, boot_id=BOOT_ID)
            sample["ssh"]["port"] = 22
            sample["action"] = (action_at or {}).get(minutes - k, "none")
            samples.append(sample)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "agent.json").write_text(json.dumps({"version": 1, "samples": samples}))

    def stored_samples(self) -> list[dict[str, Any]]:
        return json.loads((self.state_dir / "agent.json").read_text())["samples"]


@pytest.fixture
def box(tmp_path: Path) -> FakeBox:
    return FakeBox(tmp_path / "box", mode="shutdown", idle_minutes=30, grace_minutes=5)


# --- sample and status ---------------------------------------------------------------------


def test_sample_json_prints_one_raw_sample_of_every_signal(box: FakeBox):
    box.gpu_csv.write_text(H100["busy"]["gpu_csv"])
    done = box.run("sample", "--json")
    assert done.returncode == 0, done.stderr
    sample = json.loads(done.stdout)
    assert sample["gpu"]["devices"][0]["util"] == 100.0
    assert sample["cpu"] == {"status": "ok", "detail": "", "load1": 0.05, "cores": 2}
    assert sample["boot_id"] == BOOT_ID
    assert not (box.state_dir / "agent.json").exists(), "sample must not touch the state"


def test_status_explains_each_signal(box: FakeBox):
    box.gpu_csv.write_text(H100["busy"]["gpu_csv"])
    done = box.run("status")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("not idle: active signal(s): gpu")
    assert "GPU 0 at 100%" in done.stdout
    for name in ("gpu", "cpu", "ssh", "jupyter", "lease", "cloud_init"):
        assert f"  {name} " in done.stdout


def test_status_json_is_machine_readable(box: FakeBox):
    box.seed_quiet_history(10)
    done = box.run("status", "--json")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["idle"] is False and status["mode"] == "shutdown"
    assert 9 * 60 <= status["quiet_seconds"] <= 11 * 60
    assert status["signals"]["gpu"] == {"state": "quiet", "detail": "GPU at 0%"}


# --- tick ------------------------------------------------------------------------------------


def test_tick_persists_the_sample_and_writes_the_status_file(box: FakeBox):
    assert box.run("tick").returncode == 0
    done = box.run("tick")
    assert done.returncode == 0, done.stderr
    samples = box.stored_samples()
    assert [s["action"] for s in samples] == ["none", "none"]
    status = json.loads((box.state_dir / "status.json").read_text())
    assert status["reasons"][0].startswith("not idle yet")
    assert "not idle yet" in done.stderr  # the journal line


def test_tick_warns_once_when_the_window_is_reached_and_does_not_power_off(box: FakeBox):
    box.seed_quiet_history(31)
    done = box.run("tick")
    assert done.returncode == 0, done.stderr
    assert box.stored_samples()[-1]["action"] == "warn"
    assert "sudo nomadrig-agent hold 6h" in box.wall_log.read_text()
    assert not box.poweroff_log.exists()
    box.run("tick")
    assert box.wall_log.read_text().count("will shut down") == 1


def test_tick_powers_off_after_the_grace_and_records_it_first(box: FakeBox):
    box.seed_quiet_history(37, action_at={31: "warn"})
    done = box.run("tick")
    assert done.returncode == 0, done.stderr
    assert box.poweroff_log.read_text() == "poweroff\n"
    assert "shutting down now" in box.wall_log.read_text()
    assert box.stored_samples()[-1]["action"] == "shutdown"


def test_a_failed_poweroff_is_reported_and_retried_next_run(box: FakeBox):
    settings = json.loads((box.root / "etc" / "nomadrig" / "agent.json").read_text())
    box.write_config(dict(settings, grace_minutes=0, poweroff_command=["false"]))
    box.seed_quiet_history(31)
    done = box.run("tick")
    assert done.returncode == 1
    assert "false exited 1" in done.stderr
    assert box.stored_samples()[-1]["action"] == "shutdown_failed"


def test_activity_while_warned_cancels_and_tells_the_users(box: FakeBox):
    box.seed_quiet_history(33, action_at={31: "warn", 32: "warn"})
    box.gpu_csv.write_text(H100["busy"]["gpu_csv"])
    assert box.run("tick").returncode == 0
    assert "idle shutdown cancelled, activity seen (gpu)" in box.wall_log.read_text()
    assert box.stored_samples()[-1]["action"] == "none"
    assert not box.poweroff_log.exists()


def test_report_mode_never_warns_or_powers_off(tmp_path: Path):
    box = FakeBox(tmp_path / "tower", mode="report", idle_minutes=30)
    box.seed_quiet_history(40)
    assert box.run("tick").returncode == 0
    assert box.stored_samples()[-1]["action"] == "report"
    status = json.loads((box.state_dir / "status.json").read_text())
    assert status["idle"] is True and "report mode" in status["reasons"][0]
    assert not box.wall_log.exists() and not box.poweroff_log.exists()


def test_a_missing_nvidia_smi_is_logged_and_the_rest_decides(box: FakeBox):
    box.nvidia_smi.unlink()
    done = box.run("tick")
    assert done.returncode == 0, done.stderr
    assert "WARNING gpu: nvidia-smi missing" in done.stderr
    assert "deciding on the other signals" in done.stderr
    status = json.loads((box.state_dir / "status.json").read_text())
    assert status["signals"]["gpu"]["state"] == "unknown"
    assert status["reasons"][0].startswith("not idle yet")


def test_a_damaged_state_file_restarts_the_count_instead_of_crashing(box: FakeBox):
    box.state_dir.mkdir(parents=True)
    (box.state_dir / "agent.json").write_text('{"samples": [{"t": 1')
    done = box.run("tick")
    assert done.returncode == 0, done.stderr
    assert "damaged" in done.stderr
    assert len(box.stored_samples()) == 1
    assert (box.state_dir / "agent.json.damaged").exists()


# --- hold / release --------------------------------------------------------------------------


def test_hold_keeps_an_idle_box_up_and_release_ends_it(box: FakeBox):
    box.seed_quiet_history(40)
    done = box.run("hold", "6h", "--reason", "overnight eval")
    assert done.returncode == 0, done.stderr
    assert "held until" in done.stdout
    assert box.run("tick").returncode == 0
    assert box.stored_samples()[-1]["action"] == "none"
    status = json.loads(box.run("status", "--json").stdout)
    assert status["signals"]["lease"]["state"] == "active" and "by ada" in status["signals"]["lease"]["detail"]
    assert box.run("release").stdout.startswith("lease released")
    assert box.run("release").stdout.startswith("there was no lease")


@pytest.mark.parametrize(("duration", "fragment"), [("6 hours", "e.g. 90m, 6h, 1d"), ("30d", "max_hold_hours")])
def test_hold_rejects_bad_durations_with_exit_2(box: FakeBox, duration: str, fragment: str):
    done = box.run("hold", duration)
    assert done.returncode == 2
    assert fragment in done.stderr
    assert not (box.state_dir / "lease.json").exists()


def test_a_bad_config_file_is_named_with_the_field_and_exit_2(tmp_path: Path):
    box = FakeBox(tmp_path / "box", mode="stop")
    done = box.run("tick")
    assert done.returncode == 2
    assert "agent.json: mode must be one of report|shutdown, got 'stop'" in done.stderr
    assert "Traceback" not in done.stderr


# --- the install bundle -----------------------------------------------------------------------


def test_bundle_lists_the_package_the_wrapper_config_and_units():
    files = {f.path: f for f in bundle.agent_files({"mode": "shutdown", "idle_minutes": 45})}
    modules = [p for p in files if p.startswith("/opt/nomadrig/agent/nomadrig_agent/")]
    assert "/opt/nomadrig/agent/nomadrig_agent/__main__.py" in modules
    assert "/opt/nomadrig/agent/nomadrig_agent/bundle.py" not in modules  # installer only
    assert files["/usr/local/bin/nomadrig-agent"].mode == 0o755
    config = json.loads(files["/etc/nomadrig/agent.json"].content)
    assert config["mode"] == "shutdown" and config["idle_minutes"] == 45 and config["grace_minutes"] == 10
    service = files["/etc/systemd/system/nomadrig-agent.service"].content
    assert "Type=oneshot" in service and "ExecStart=/usr/local/bin/nomadrig-agent tick" in service
    timer = files["/etc/systemd/system/nomadrig-agent.timer"].content
    for line in (
        "OnBootSec=2min",
        "OnUnitActiveSec=60s",
        "AccuracySec=5s",
        "Persistent=true",
        "WantedBy=timers.target",
    ):
        assert line in timer.splitlines()
    assert not any(".timer.d/" in p for p in files)


def test_a_shorter_interval_gets_a_timer_dropin_matching_the_config():
    files = {f.path: f for f in bundle.agent_files({"interval_seconds": 15})}
    dropin = files["/etc/systemd/system/nomadrig-agent.timer.d/interval.conf"].content
    assert dropin.splitlines() == ["[Timer]", "OnUnitActiveSec=", "OnUnitActiveSec=15s"]
    assert json.loads(files["/etc/nomadrig/agent.json"].content)["interval_seconds"] == 15


def test_bundle_refuses_a_bad_config_before_anything_is_rendered():
    with pytest.raises(ConfigError, match="agent config: grace_minutes must be a whole number"):
        bundle.agent_files({"grace_minutes": "ten"})


def shipped_sources(compact: bool) -> dict[str, str]:
    return {
        Path(f.path).name: f.content
        for f in bundle.agent_files({}, compact=compact)
        if f.path.startswith(bundle.PACKAGE_INSTALL_DIR)
    }


@pytest.mark.parametrize("compact", [False, True])
def test_shipped_modules_use_only_the_standard_library_and_python_3_9_syntax(compact: bool):
    for name, source in shipped_sources(compact).items():
        tree = ast.parse(source, filename=name, feature_version=(3, 9))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                assert node.module.split(".")[0] in sys.stdlib_module_names, f"{name}: from {node.module}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert alias.name.split(".")[0] in sys.stdlib_module_names, f"{name}: import {alias.name}"
            assert not isinstance(node, ast.Match), f"{name}: match statement"


def install(tmp_path: Path, compact: bool) -> Path:
    """Write the bundle's package files under ``tmp_path`` as cloud-init would under /."""
    for item in bundle.agent_files({}, compact=compact):
        if item.path.startswith(bundle.INSTALL_DIR):
            target = tmp_path / item.path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(item.content)
    return tmp_path / bundle.INSTALL_DIR.lstrip("/")


def oldest_python() -> str:
    """Python 3.9 when this machine has a working one (the oldest python3 the agent supports)."""
    candidates = [shutil.which("python3.9"), *map(str, Path.home().glob(".pyenv/versions/3.9*/bin/python3.9"))]
    for candidate in filter(None, candidates):
        if subprocess.run([candidate, "-c", "pass"], capture_output=True, check=False).returncode == 0:
            return candidate
    return sys.executable


@pytest.mark.parametrize("compact", [False, True])
def test_the_installed_package_runs_as_nomadrig_agent_under_the_oldest_python(tmp_path: Path, compact: bool):
    install_dir = install(tmp_path / "install", compact)
    box = FakeBox(tmp_path / "box")
    wrapper = Path(bundle.UNITS_SOURCE_DIR, "nomadrig-agent").read_text()
    code = wrapper.split("-c '")[1].split("'")[0].replace("/opt/nomadrig/agent", str(install_dir))
    env = dict(os.environ, NOMADRIG_AGENT_ROOT=str(box.root))
    python = oldest_python()
    done = subprocess.run(
        [python, "-I", "-c", code, "tick"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, (python, done.stderr)
    assert len(box.stored_samples()) == 1
    version = subprocess.run(
        [python, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True, check=True
    ).stdout
    print(f"ran under {python}: {version.strip()}")


@pytest.fixture
def compact_agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The compact package (what boxes run) imported as ``nomadrig_agent`` from a temporary install."""
    import importlib

    monkeypatch.syspath_prepend(str(install(tmp_path / "install", compact=True)))
    for name in [m for m in sys.modules if m.split(".")[0] == "nomadrig_agent"]:
        monkeypatch.delitem(sys.modules, name)
    package = importlib.import_module("nomadrig_agent")
    for module in ("config", "decision", "jupyter", "lease", "sampler", "untrusted"):
        importlib.import_module(f"nomadrig_agent.{module}")
    yield package
    for name in [m for m in sys.modules if m.split(".")[0] == "nomadrig_agent"]:
        del sys.modules[name]


SCENARIOS = sorted((FIXTURES / "scenarios").glob("*.json"))


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_the_compact_package_decides_exactly_like_the_source(compact_agent: Any, path: Path):
    from nomadrig.agent import config as source_config
    from nomadrig.agent import decision as source_decision

    scenario = json.loads(path.read_text())

    def replay(config_module: Any, decision_module: Any) -> list[dict[str, Any]]:
        config = config_module.AgentConfig.from_dict(scenario["config"])
        history: list[dict[str, Any]] = []
        decisions = []
        for sample in json.loads(json.dumps(scenario["samples"])):
            history.append(sample)
            decision = decision_module.decide(history, config, now=sample["t"])
            sample["action"] = decision.action
            decisions.append(decision.to_dict())
        return decisions

    assert replay(compact_agent.config, compact_agent.decision) == replay(source_config, source_decision)


def test_the_compact_package_samples_and_refuses_like_the_source(compact_agent: Any, tmp_path: Path):
    from nomadrig.agent import config as source_config
    from nomadrig.agent import jupyter as source_jupyter
    from nomadrig.agent import lease as source_lease
    from tests.test_agent_hostile import BROKEN_SERVER_FILES

    runtime = tmp_path / "runtime"
    runtime.mkdir()
    for number, breaker in enumerate(BROKEN_SERVER_FILES.values()):
        breaker(runtime / f"jpserver-{number}.json")
    (runtime / "kernel-77777777-0000-0000-0000-000000000000.json").write_text("{}")

    def refused(call: Any) -> str:
        try:
            call()
        except ValueError as error:
            return f"{type(error).__name__}: {error}"
        return "accepted"

    bad_configs = [{"mode": "x"}, {"grace_minutes": "ten"}, {"ssh_port": 0}, {"nope": 1}, []]
    assert compact_agent.jupyter.sample_jupyter([str(runtime)]) == source_jupyter.sample_jupyter([str(runtime)])
    for raw in bad_configs:
        assert refused(lambda r=raw: compact_agent.config.AgentConfig.from_dict(r)) == refused(
            lambda r=raw: source_config.AgentConfig.from_dict(r))
    for text in ("90m", "0h", "6 weeks", ""):
        assert refused(lambda t=text: compact_agent.lease.parse_duration(t)) == refused(
            lambda t=text: source_lease.parse_duration(t))


def test_cloud_init_entries_decode_to_the_bundle_files():
    plain = {f.path: f for f in bundle.agent_files({"mode": "shutdown"}, compact=True)}
    for entry in bundle.cloud_init_write_files({"mode": "shutdown"}, encode=True):
        assert entry["encoding"] == "gz+b64"
        content = gzip.decompress(base64.b64decode(entry["content"])).decode()
        assert content == plain[entry["path"]].content
        assert entry["permissions"] == f"0{plain[entry['path']].mode:o}"
    assert bundle.cloud_init_runcmd() == [
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "--now", "nomadrig-agent.timer"],
    ]


def test_the_compact_agent_fits_ec2_user_data_when_gzipped():
    doc = "#cloud-config\n" + yaml.safe_dump(
        {"write_files": bundle.cloud_init_write_files({"mode": "shutdown"}), "runcmd": bundle.cloud_init_runcmd()}
    )
    packed = gzip.compress(doc.encode(), mtime=0)
    print(f"agent cloud-config: {len(doc)} bytes, gzipped {len(packed)} bytes (EC2 limit 16384)")
    assert len(packed) < 16384


def test_bundle_output_is_deterministic():
    first = bundle.cloud_init_write_files({"mode": "shutdown"}, encode=True)
    assert first == bundle.cloud_init_write_files({"mode": "shutdown"}, encode=True)


# --- the role ships the same files ------------------------------------------------------------


ROLE = REPO / "roles" / "agent"


def test_role_copies_the_same_modules_as_the_bundle():
    tasks = yaml.safe_load((ROLE / "tasks" / "main.yml").read_text())
    copy_task = next(t for t in tasks if t["name"].startswith("Copy the agent modules"))
    assert copy_task["loop"] == "{{ __agent_modules }}"
    modules = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())["__agent_modules"]
    assert "fileglob" in modules and "bundle[.]py" in modules
    assert {"bundle.py"} == bundle.NOT_SHIPPED


def test_role_argument_specs_declare_every_default_with_the_same_value():
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    options = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    assert set(options) == set(defaults)
    for name, spec in options.items():
        assert spec["default"] == defaults[name], name
        assert spec["description"], name
    assert options["agent_mode"]["choices"] == ["report", "shutdown"]


def test_role_defaults_make_a_valid_agent_config():
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    config = AgentConfig.from_dict(
        {
            "mode": defaults["agent_mode"],
            "idle_minutes": defaults["agent_idle_minutes"],
            "grace_minutes": defaults["agent_grace_minutes"],
        }
    )
    assert config.mode == "report"
