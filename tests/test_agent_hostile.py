"""Box users' files never stop the idle agent: a broken source is reported as unknown, the rest still counts.

Any user can write their own Jupyter runtime folder, and ``nomadrig-agent
tick`` reads it as root every minute. Each hostile file below sits beside a
busy CPU: the tick must exit 0, report Jupyter as unknown (in ``status`` and
in the journal line), and still see the CPU as active. The same files on a
quiet box must not keep it up forever either: the idle count goes on, as it
does for a failing ``nvidia-smi``.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nomadrig.agent import jupyter
from nomadrig.agent.config import AgentConfig, Paths
from nomadrig.agent.decision import SIGNALS, decide, read_signals
from nomadrig.agent.lease import sample_lease
from nomadrig.agent.sampler import take_sample
from nomadrig.agent.untrusted import Refused, load_json, printable, read_limited
from tests.test_agent_cli import FakeBox

RUNTIME = Path("home/ada/.local/share/jupyter/runtime")


def write(content: bytes | str) -> Callable[[Path], None]:
    data = content.encode() if isinstance(content, str) else content
    return lambda path: path.write_bytes(data)


def symlink_to(target: str) -> Callable[[Path], None]:
    return lambda path: path.symlink_to(target)


def fifo(path: Path) -> None:
    os.mkfifo(path)


def symlink_to_fifo(path: Path) -> None:
    os.mkfifo(path.with_name("pipe"))
    path.symlink_to(path.with_name("pipe"))


def hard_link(path: Path) -> None:
    other = path.with_name("elsewhere.json")
    other.write_text(json.dumps({"port": 8888}))
    os.link(other, path)


def directory(path: Path) -> None:
    path.mkdir()


# name -> how to make jpserver-1.json hostile
BROKEN_SERVER_FILES: dict[str, Callable[[Path], None]] = {
    "port-1e400": write('{"port": 1e400, "token": "x"}'),
    "port-nan": write('{"port": NaN}'),
    "port-infinity": write('{"port": Infinity}'),
    "port-string": write('{"port": "8888"}'),
    "port-bool": write('{"port": true}'),
    "port-zero": write('{"port": 0}'),
    "port-too-big": write('{"port": 70000}'),
    "port-5000-digits": write('{"port": ' + "9" * 5000 + "}"),
    "base-url-crlf": write(json.dumps({"port": 8888, "base_url": "/\r\nX-Injected: yes\r\n"})),
    "base-url-other-host": write(json.dumps({"port": 8888, "base_url": "@evil.example/"})),
    "token-control-chars": write(json.dumps({"port": 8888, "token": "a\r\nX-Injected: yes"})),
    "a-list": write("[1, 2, 3]"),
    "a-string": write('"jpserver"'),
    "null": write("null"),
    "invalid-utf8": write(b'{"port": 8888, "token": "\xff\xfe"}'),
    "not-json": write("port = 8888"),
    "nested-deep": write("[" * 30000 + "]" * 30000),
    "huge": write(b" " * (2 * 1024 * 1024) + b"{}"),
    "symlink-dev-zero": symlink_to("/dev/zero"),
    "symlink-fifo": symlink_to_fifo,
    "fifo": fifo,
    "hard-link": hard_link,
    "directory": directory,
}


@pytest.fixture
def busy_box(tmp_path: Path) -> FakeBox:
    box = FakeBox(tmp_path / "box", mode="shutdown", idle_minutes=30, grace_minutes=5)
    (box.root / "proc" / "loadavg").write_text("8.00 8.00 8.00 3/200 4242\n")  # 4 per core on 2 cores
    (box.root / RUNTIME).mkdir(parents=True)
    return box


@pytest.mark.parametrize("breaker", BROKEN_SERVER_FILES.values(), ids=BROKEN_SERVER_FILES.keys())
def test_a_broken_jupyter_file_beside_a_busy_cpu_leaves_the_cpu_active(busy_box: FakeBox, breaker):
    breaker(busy_box.root / RUNTIME / "jpserver-1.json")

    tick = busy_box.run("tick")
    status = busy_box.run("status", "--json")

    assert tick.returncode == 0, tick.stderr
    recorded = json.loads((busy_box.state_dir / "status.json").read_text())
    assert recorded["signals"]["cpu"]["state"] == "active", recorded["signals"]
    assert recorded["signals"]["jupyter"]["state"] == "unknown", recorded["signals"]["jupyter"]
    assert "jpserver-1.json" in recorded["signals"]["jupyter"]["detail"]
    assert recorded["reasons"][0] == "not idle: active signal(s): cpu"
    assert "WARNING jupyter: Jupyter unreadable (jpserver-1.json: " in tick.stderr
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["signals"]["cpu"]["state"] == "active"


def test_a_broken_jupyter_file_does_not_keep_a_quiet_box_up(tmp_path: Path):
    box = FakeBox(tmp_path / "box", mode="shutdown", idle_minutes=30, grace_minutes=5)
    (box.root / RUNTIME).mkdir(parents=True)
    (box.root / RUNTIME / "jpserver-1.json").write_text('{"port": 1e400}')
    box.seed_quiet_history(31)

    done = box.run("tick")

    assert done.returncode == 0, done.stderr
    assert box.stored_samples()[-1]["action"] == "warn", "an unknown Jupyter must not hold the box up forever"
    assert "will shut down" in box.wall_log.read_text()


def test_one_broken_file_does_not_hide_a_good_server_or_the_kernel_files(tmp_path: Path, kernels_server):
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    (runtime / "jpserver-1.json").write_text('{"port": 1e400}')
    (runtime / "jpserver-2.json").write_text(json.dumps({"port": kernels_server, "token": "t0k"}))
    (runtime / "kernel-77777777-0000-0000-0000-000000000000.json").write_text("{}")
    KernelsHandler.answer = [{"id": "9b1e4a77-2c3d-4e8f-8a6b-5c4d3e2f1a00", "execution_state": "busy"}]

    sample = jupyter.sample_jupyter([str(runtime)])

    assert sample["status"] == "ok"
    assert {k["id"] for k in sample["kernels"]} == {"9b1e4a77-2c3d-4e8f-8a6b-5c4d3e2f1a00",
                                                  "77777777-0000-0000-0000-000000000000"}
    assert sample["detail"].startswith("jpserver-1.json: ")


# -- the server's answer is as hostile as its file ---------------------------------------------


class KernelsHandler(http.server.BaseHTTPRequestHandler):
    """A Jupyter stand-in on loopback; each test sets `answer` (JSON), `raw` (bytes) or `redirect`."""

    answer: Any = []
    raw: bytes | None = None
    redirect: str | None = None
    requests: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        self.requests.append(self.path)
        if self.redirect:
            self.send_response(302)
            self.send_header("Location", self.redirect)
            self.end_headers()
            return
        body = self.raw if self.raw is not None else json.dumps(self.answer).encode()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def kernels_server() -> Iterator[int]:
    KernelsHandler.answer, KernelsHandler.raw, KernelsHandler.redirect = [], None, None
    KernelsHandler.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), KernelsHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def sample_from(port: int, tmp_path: Path) -> dict[str, Any]:
    runtime = tmp_path / "runtime"
    runtime.mkdir(exist_ok=True)
    (runtime / "jpserver-9.json").write_text(json.dumps({"port": port, "token": "t0k"}))
    return jupyter.sample_jupyter([str(runtime)])


@pytest.mark.parametrize(
    ("answer", "raw", "fragment"),
    [
        ({"kernels": []}, None, "not a JSON list"),
        (["a kernel"], None, "not a JSON object"),
        (None, b'[{"id": 1e400}]', "not a finite number"),
        (None, b"[" * 30000 + b"]" * 30000, "nested too deeply"),
        (None, b"[" + b"{}," * 600000 + b"{}]", "too big or too slow"),
        (None, b"\xff\xfe", "UnicodeDecodeError"),
    ],
    ids=["a-dict", "not-objects", "inf", "deep", "huge", "not-utf8"],
)
def test_a_hostile_answer_is_reported_not_raised(kernels_server, tmp_path, answer, raw, fragment):
    KernelsHandler.answer, KernelsHandler.raw = answer, raw
    sample = sample_from(kernels_server, tmp_path)
    assert sample["status"] == "error"
    assert fragment in sample["detail"]


def test_a_redirect_is_not_followed(kernels_server, tmp_path):
    KernelsHandler.redirect = f"http://127.0.0.1:{kernels_server}/elsewhere"
    sample = sample_from(kernels_server, tmp_path)
    assert "HTTP 302" in sample["detail"]
    assert KernelsHandler.requests == ["/api/kernels"]


def test_kernel_fields_are_checked_and_made_printable(kernels_server, tmp_path):
    KernelsHandler.answer = [
        {"id": "abc\r\n\x1b[2Jdef", "execution_state": "\x1b[31mbusy", "last_activity": "9999-12-31T23:59:59Z"},
        {"id": ["not", "a", "string"], "execution_state": 7, "last_activity": 1e300},
        {"id": "x" * 500, "execution_state": "idle", "last_activity": "yesterday"},
    ]
    kernels = sample_from(kernels_server, tmp_path)["kernels"]
    assert [k["id"] for k in kernels] == ["abc2Jdef", "notastring", "x" * 36]
    assert [k["state"] for k in kernels] == ["unknown", "unknown", "idle"]
    assert [k["last_activity"] is None for k in kernels] == [False, True, True]


def test_a_kernel_active_in_the_far_future_is_not_activity():
    part = {"status": "ok", "kernels": [{"id": "k", "state": "idle", "last_activity": 253402300799.0}]}
    reading = read_signals({"t": 1_800_000_000.0, "jupyter": part}, AgentConfig())["jupyter"]
    assert reading.state == "quiet", reading


@pytest.mark.parametrize(
    "url",
    ["http://evil.example:8888/api/kernels", "http://10.0.0.1:8888/", "http://127.0.0.1:99999/",
     "file:///etc/shadow", "http://127.0.0.1/api"],
)
def test_fetch_refuses_anything_but_a_loopback_http_port(url):
    with pytest.raises((Refused, ValueError)):
        jupyter.fetch_json(url, "")


# -- the bounded reader and the JSON loader ----------------------------------------------------


def test_read_limited_reads_a_small_regular_file(tmp_path: Path):
    path = tmp_path / "f.json"
    path.write_text('{"port": 8888}')
    assert load_json(read_limited(str(path), 100)) == {"port": 8888}


@pytest.mark.parametrize("name", ["symlink-dev-zero", "symlink-fifo", "fifo", "hard-link", "directory", "huge"])
def test_read_limited_refuses_what_is_not_a_small_plain_file(tmp_path: Path, name: str):
    path = tmp_path / "jpserver-1.json"
    BROKEN_SERVER_FILES[name](path)
    with pytest.raises(Refused):
        read_limited(str(path), 65536)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_load_json_raises_only_value_errors(data: bytes):
    with contextlib.suppress(ValueError):  # Refused and UnicodeDecodeError are ValueErrors; nothing else may escape
        load_json(data)


@given(st.text(max_size=80))
def test_printable_text_is_one_line_without_control_characters(text: str):
    shown = printable(text)
    assert shown.isprintable()


# -- isolation: one failing source, one malformed sample part ---------------------------------


def test_a_source_that_raises_is_unknown_and_the_others_are_kept(tmp_path: Path):
    box = FakeBox(tmp_path / "box")
    (box.root / "proc" / "loadavg").write_text("8.00 8.00 8.00 3/200 4242\n")

    def exploding_runner(argv: list[str]) -> tuple[int, str, str]:
        raise RuntimeError("nvidia-smi stand-in blew up")

    def exploding_fetch(url: str, token: str) -> Any:
        raise MemoryError

    (box.root / RUNTIME).mkdir(parents=True)
    (box.root / RUNTIME / "jpserver-1.json").write_text('{"port": 8888}')
    config = AgentConfig(nvidia_smi=str(box.nvidia_smi))
    sample = take_sample(config, Paths(root=str(box.root), proc=str(box.root / "proc")), runner=exploding_runner,
                         fetch=exploding_fetch)

    assert sample["gpu"] == {"status": "error",
                             "detail": "gpu could not be sampled: RuntimeError: nvidia-smi stand-in blew up"}
    assert sample["jupyter"]["status"] == "error" and "MemoryError" in sample["jupyter"]["detail"]
    states = {name: r.state for name, r in read_signals(sample, config).items()}
    assert states["cpu"] == "active" and states["gpu"] == "unknown" and states["jupyter"] == "unknown"


def test_a_lease_ending_at_infinity_is_unknown_not_forever(tmp_path: Path):
    (tmp_path / "lease.json").write_text('{"until": 1e400, "by": "ada"}')
    part = sample_lease(str(tmp_path))
    reading = read_signals({"t": 1_800_000_000.0, "lease": part}, AgentConfig())["lease"]
    assert reading.state != "active", reading


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
part_values = st.one_of(
    json_values,
    st.fixed_dictionaries({"status": st.sampled_from(["ok", "error", "missing", 3])},
                          optional={k: json_values for k in ("detail", "devices", "processes", "load1", "cores",
                                                             "connections", "kernels", "until", "by", "running",
                                                             "count_kernels", "count_processes", "port")}),
)


@settings(max_examples=300, deadline=None)
@given(parts=st.fixed_dictionaries({name: part_values for name in SIGNALS}))
def test_no_malformed_sample_part_makes_the_decision_raise(parts: dict[str, Any]):
    config = AgentConfig()
    sample = {"v": 1, "t": 1_800_000_000.0, "mono": 1000.0, "boot_id": "b", **parts}
    readings = read_signals(sample, config)
    assert set(readings) == set(SIGNALS)
    assert all(r.state in ("active", "quiet", "unknown") and r.detail.isprintable() for r in readings.values())
    decide([sample], config, now=sample["t"])


def test_the_servers_open_html_page_is_not_read_as_a_server_file(tmp_path: Path):
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    (runtime / "jpserver-4242-open.html").write_text("<html>redirect to the lab</html>")
    assert jupyter.sample_jupyter([str(runtime)]) == {"status": "ok", "detail": "", "kernels": []}
