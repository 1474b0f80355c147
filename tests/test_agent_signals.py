"""Signal parsers and samplers on recorded outputs.

Recordings in ``tests/fixtures/agent/``:

* ``proc_net_tcp.txt`` / ``proc_net_tcp6.txt``: the kernel's tables in a fresh
  network namespace holding a listener on 127.0.0.1:22 and [::1]:22 with one
  connection each, a connection to 127.0.0.1:8888, and a v4 connection to a
  dual-stack listener on port 2222 (a v4-mapped row in tcp6);
* ``h100_matmul_recording.json``: ``nvidia-smi`` query outputs and agent
  samples on an H100 before, during and after a PyTorch matmul;
* ``h100_nvidia_smi_edge_cases.json``: ``nvidia-smi`` on the same H100 with a
  bad field, an ``[N/A]`` field, a missing GPU index and a header line.
"""

from __future__ import annotations

import http.server
import json
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from nomadrig.agent import gpu, jupyter
from nomadrig.agent.cloudinit import sample_cloud_init
from nomadrig.agent.config import AgentConfig, Paths
from nomadrig.agent.cpu import count_cores, parse_loadavg, sample_cpu
from nomadrig.agent.decision import read_signals
from nomadrig.agent.lease import parse_duration, remove_lease, sample_lease, write_lease
from nomadrig.agent.netstat import classify_peer, parse_proc_net_tcp, sample_ssh, ssh_connections
from nomadrig.agent.sampler import take_sample

FIXTURES = Path(__file__).parent / "fixtures" / "agent"
TCP = (FIXTURES / "proc_net_tcp.txt").read_text()
TCP6 = (FIXTURES / "proc_net_tcp6.txt").read_text()
H100 = json.loads((FIXTURES / "h100_matmul_recording.json").read_text())
EDGE = json.loads((FIXTURES / "h100_nvidia_smi_edge_cases.json").read_text())


# --- SSH: /proc/net/tcp{,6} -----------------------------------------------------------------


def test_established_ssh_connections_are_counted_in_both_families():
    found = ssh_connections([TCP, TCP6], port=22)
    assert sorted(c["peer"] for c in found) == ["127.0.0.1:54256", "[::1]:43774"]
    assert {c["kind"] for c in found} == {"loopback"}


def test_listening_sockets_and_the_client_side_of_a_connection_do_not_count():
    # The recorded tables hold the listeners on :22 and the client ends (remote port 22) too.
    rows = parse_proc_net_tcp(TCP) + parse_proc_net_tcp(TCP6)
    assert sum(1 for r in rows if r["local"]["port"] == 22 and r["state"] == "0A") == 2
    assert sum(1 for r in rows if r["remote"]["port"] == 22 and r["state"] == "01") == 2
    assert len(ssh_connections([TCP, TCP6], port=22)) == 2


def test_a_v4_connection_to_a_dual_stack_listener_reads_as_ipv4():
    found = ssh_connections([TCP, TCP6], port=2222)
    assert found == [{"peer": "127.0.0.1:43010", "kind": "loopback"}]


def test_another_port_is_not_ssh():
    assert ssh_connections([TCP, TCP6], port=2200) == []
    assert len(ssh_connections([TCP, TCP6], port=8888)) == 1  # the connection to the 8888 listener


@pytest.mark.parametrize(
    ("address", "kind"),
    [("127.0.0.1", "loopback"), ("::1", "loopback"), ("35.235.241.10", "iap"), ("198.51.100.7", "remote")],
)
def test_peers_are_classified_for_the_status_report(address, kind):
    assert classify_peer(address) == kind


def test_a_connection_from_the_iap_range_counts_and_is_labelled():
    # The recorded established row on :22, with its peer rewritten to 35.235.241.10 (IAP range).
    row = next(line for line in TCP.splitlines() if "0100007F:0016 0100007F:D3F0 01" in line)
    iap = row.replace("0100007F:D3F0", "0AF1EB23:D3F0")  # 35.235.241.10, host byte order
    found = ssh_connections([TCP.splitlines()[0] + "\n" + iap], port=22)
    assert found == [{"peer": "35.235.241.10:54256", "kind": "iap"}]


def test_a_damaged_table_is_an_error_naming_the_line():
    with pytest.raises(ValueError, match="line 2"):
        parse_proc_net_tcp(TCP.splitlines()[0] + "\n   0: garbage\n")


def test_ssh_sampler_reports_unreadable_tables_instead_of_quiet():
    result = sample_ssh(lambda name: None, 22)
    assert result["status"] == "error" and "net/tcp" in result["detail"]
    reading = read_signals({"t": 0.0, "ssh": result}, AgentConfig())["ssh"]
    assert reading.state == "unknown"


def test_ssh_sampler_uses_the_ipv4_table_when_ipv6_is_disabled():
    result = sample_ssh(lambda name: TCP if name == "net/tcp" else None, 22)
    assert result["status"] == "ok" and len(result["connections"]) == 1


# --- GPU: nvidia-smi -------------------------------------------------------------------------


def test_busy_gpu_csv_recorded_during_a_matmul():
    assert gpu.parse_gpu_csv(H100["busy"]["gpu_csv"]) == [
        {"index": 0, "util": 100.0, "mem_used": 1139.0, "mem_total": 81559.0}
    ]
    assert gpu.parse_apps_csv(H100["busy"]["apps_csv"]) == [
        {"pid": 422, "name": "/opt/torch/.venv/bin/python3", "mem": 1130.0}
    ]


def test_idle_gpu_csv_and_no_compute_processes():
    assert gpu.parse_gpu_csv(H100["idle"]["gpu_csv"])[0]["util"] == 0.0
    assert EDGE["apps_idle"]["stdout"] == ""
    assert gpu.parse_apps_csv(EDGE["apps_idle"]["stdout"]) == []


def test_na_fields_are_unknown_not_zero():
    devices = gpu.parse_gpu_csv(EDGE["na_fields"]["stdout"])  # "[N/A], 0, 81559"
    assert devices == [{"index": 0, "util": None, "mem_used": 0.0, "mem_total": 81559.0}]


def test_header_and_units_are_rejected_rather_than_misread():
    with pytest.raises(ValueError, match="unexpected nvidia-smi output"):
        gpu.parse_gpu_csv(EDGE["plain_header"]["stdout"])


def test_process_names_with_commas_are_kept_whole():
    assert gpu.parse_apps_csv("4242, python train.py --lr 1e-4,--bs 8, 20480\n") == [
        {"pid": 4242, "name": "python train.py --lr 1e-4,--bs 8", "mem": 20480.0}
    ]


def recorded_runner(gpu_case: str, apps_case: str = "apps_idle"):
    def run(argv):
        case = gpu_case if any(a.startswith("--query-gpu") for a in argv) else apps_case
        recorded = EDGE[case]
        return recorded["rc"], recorded["stdout"], recorded["stderr"]

    return run


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ("bad_field", 'exited 2: Field "bogus" is not a valid field to query.'),
        ("bad_index", "exited 6: No devices were found"),
        ("plain_header", "unexpected nvidia-smi output"),
    ],
)
def test_failing_nvidia_smi_is_an_error_with_its_message(case, fragment):
    result = gpu.sample_gpu("/usr/bin/nvidia-smi", recorded_runner(case))
    assert result["status"] == "error"
    assert fragment in result["detail"]


def test_driver_not_loaded_message_is_reported():
    # The message nvidia-smi prints (exit 9) when the driver is not loaded, e.g. mid-upgrade.
    message = (
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
        "Make sure that the latest NVIDIA driver is installed and running.\n"
    )
    result = gpu.sample_gpu("nvidia-smi", lambda argv: (9, message, ""))
    assert result["status"] == "error" and "couldn't communicate" in result["detail"]


def test_missing_nvidia_smi_is_missing_not_an_error(tmp_path):
    assert gpu.sample_gpu(None)["status"] == "missing"
    result = gpu.sample_gpu(str(tmp_path / "nvidia-smi"))  # real run of a path that does not exist
    assert result["status"] == "missing" and "not found" in result["detail"]


def test_a_hung_nvidia_smi_is_cut_off(tmp_path, monkeypatch):
    script = tmp_path / "nvidia-smi"
    script.write_text("#!/bin/sh\nsleep 30\n")
    script.chmod(0o755)
    monkeypatch.setattr(gpu, "TIMEOUT_SECONDS", 0.5)
    started = time.monotonic()
    result = gpu.sample_gpu(str(script))
    assert time.monotonic() - started < 10
    assert result["status"] == "error" and "no answer" in result["detail"]


def test_processes_unknown_when_only_the_apps_query_fails():
    def run(argv):
        if any(a.startswith("--query-gpu") for a in argv):
            return 0, H100["busy"]["gpu_csv"], ""
        return 2, EDGE["bad_field"]["stdout"], ""

    result = gpu.sample_gpu("nvidia-smi", run)
    assert result["status"] == "ok" and result["processes"] is None
    assert read_signals({"t": 0.0, "gpu": result}, AgentConfig())["gpu"].state == "active"


# --- CPU, cloud-init, lease -----------------------------------------------------------------


def test_loadavg_and_cores():
    assert parse_loadavg("0.52 0.58 0.59 1/467 12345\n") == 0.52
    assert count_cores("cpu  1 2 3\ncpu0 1 2 3\ncpu1 1 2 3\nintr 5\n") == 2
    with pytest.raises(ValueError):
        parse_loadavg("")


def test_cpu_is_normalised_by_cores():
    files = {"loadavg": "3.20 1.0 1.0 2/300 99\n", "stat": "cpu 1\n" + "".join(f"cpu{i} 1\n" for i in range(16))}
    sample = sample_cpu(files.get)
    config = AgentConfig(cpu_load_threshold=0.25)
    assert read_signals({"t": 0.0, "cpu": sample}, config)["cpu"].state == "quiet"  # 0.2 per core
    files["loadavg"] = "4.00 1.0 1.0 2/300 99\n"
    assert read_signals({"t": 0.0, "cpu": sample_cpu(files.get)}, config)["cpu"].state == "active"


def test_cloud_init_running_finished_or_absent(tmp_path):
    run_dir = tmp_path / "run" / "cloud-init"
    assert sample_cloud_init(str(run_dir))["running"] is False
    run_dir.mkdir(parents=True)
    assert sample_cloud_init(str(run_dir))["running"] is True
    (run_dir / "result.json").write_text('{"v1": {"errors": []}}')
    assert sample_cloud_init(str(run_dir))["running"] is False


@pytest.mark.parametrize(("text", "seconds"), [("90m", 5400), ("6h", 21600), ("1d", 86400), (" 2h ", 7200)])
def test_hold_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["6", "6 hours", "0h", "-1h", "1.5h", ""])
def test_bad_hold_durations_say_what_is_accepted(text):
    with pytest.raises(ValueError, match="e.g. 90m, 6h, 1d"):
        parse_duration(text)


def test_lease_round_trip_and_damage(tmp_path):
    state = str(tmp_path)
    assert sample_lease(state) == {"status": "ok", "detail": "", "until": None, "by": ""}
    write_lease(state, now=1000.0, seconds=3600, by="ada", reason="eval")
    assert sample_lease(state)["until"] == 4600.0
    assert stat.S_IMODE(os.stat(tmp_path / "lease.json").st_mode) == 0o644
    assert remove_lease(state) is True and remove_lease(state) is False
    (tmp_path / "lease.json").write_text("{not json")
    damaged = sample_lease(state)
    assert damaged["status"] == "error" and "nomadrig-agent release" in damaged["detail"]


# --- Jupyter ---------------------------------------------------------------------------------


def test_jupyter_timestamps():
    assert jupyter.parse_iso_timestamp("2026-11-26T16:00:00Z") == 1795708800.0
    assert jupyter.parse_iso_timestamp("2026-11-26T16:00:00.250000Z") == 1795708800.25
    assert jupyter.parse_iso_timestamp("2026-11-26T17:00:00+01:00") == 1795708800.0
    with pytest.raises(ValueError):
        jupyter.parse_iso_timestamp("yesterday")


class KernelsHandler(http.server.BaseHTTPRequestHandler):
    kernels: list = []
    seen_auth: list = []

    def do_GET(self):  # noqa: N802 - http.server's name
        self.seen_auth.append(self.headers.get("Authorization"))
        if self.path != "/lab/api/kernels" or self.headers.get("Authorization") != "token s3cret-test-token":
            self.send_response(403)
            self.end_headers()
            return
        body = json.dumps(self.kernels).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def jupyter_server():
    server = http.server.HTTPServer(("127.0.0.1", 0), KernelsHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_kernels_come_from_the_servers_api_on_loopback(tmp_path, jupyter_server, monkeypatch):
    # A proxy in the environment must never see the token: the agent asks loopback directly.
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    KernelsHandler.kernels = [
        {
            "id": "0d6c3f2e-7a41-4c55-9a0e-2b8e9f4d1c11",
            "name": "python3",
            "execution_state": "idle",
            "last_activity": "2026-11-26T13:00:00.000000Z",
            "connections": 1,
        },
        {
            "id": "9b1e4a77-2c3d-4e8f-8a6b-5c4d3e2f1a00",
            "name": "python3",
            "execution_state": "busy",
            "last_activity": "2026-11-26T15:59:50.000000Z",
            "connections": 1,
        },
    ]
    runtime = tmp_path / "home" / "ada" / ".local" / "share" / "jupyter" / "runtime"
    runtime.mkdir(parents=True)
    (runtime / "jpserver-4242.json").write_text(
        json.dumps({"port": jupyter_server, "base_url": "/lab/", "token": "s3cret-test-token", "hostname": "0.0.0.0"})
    )
    (runtime / "kernel-9b1e4a77-2c3d-4e8f-8a6b-5c4d3e2f1a00.json").write_text("{}")  # the server's own kernel
    (runtime / "kernel-77777777-0000-0000-0000-000000000000.json").write_text("{}")  # a console kernel

    paths = Paths(root=str(tmp_path))
    sample = jupyter.sample_jupyter(jupyter.runtime_dirs(paths.under_root, []))

    assert sample["status"] == "ok", sample
    by_id = {k["id"]: k for k in sample["kernels"]}
    assert set(by_id) == {
        "0d6c3f2e-7a41-4c55-9a0e-2b8e9f4d1c11",
        "9b1e4a77-2c3d-4e8f-8a6b-5c4d3e2f1a00",
        "77777777-0000-0000-0000-000000000000",
    }
    assert by_id["9b1e4a77-2c3d-4e8f-8a6b-5c4d3e2f1a00"]["state"] == "busy"
    assert by_id["0d6c3f2e-7a41-4c55-9a0e-2b8e9f4d1c11"]["last_activity"] == 1795698000.0
    assert by_id["77777777-0000-0000-0000-000000000000"]["source"] == "file"
    assert KernelsHandler.seen_auth[-1] == "token s3cret-test-token"


def test_an_unreachable_server_falls_back_and_says_why(tmp_path):
    runtime = tmp_path / "root" / ".local" / "share" / "jupyter" / "runtime"
    runtime.mkdir(parents=True)
    (runtime / "jpserver-1.json").write_text(json.dumps({"port": 9, "token": "x"}))  # nothing listens on :9
    sample = jupyter.sample_jupyter([str(runtime)])
    assert sample["status"] == "error" and "jpserver-1.json" in sample["detail"]
    reading = read_signals({"t": 0.0, "jupyter": sample}, AgentConfig())["jupyter"]
    assert reading.state == "unknown" and "deciding on the other signals" in reading.detail


# --- the whole sampler over a fake root --------------------------------------------------------


def make_fake_box(root: Path, gpu_csv: str, apps_csv: str, load: str = "0.10 0.10 0.10 1/200 4242") -> Path:
    """A root with /proc files from the recordings and a stand-in nvidia-smi that prints ``gpu_csv``."""
    proc = root / "proc"
    (proc / "net").mkdir(parents=True)
    (proc / "sys" / "kernel" / "random").mkdir(parents=True)
    (proc / "net" / "tcp").write_text(TCP)
    (proc / "net" / "tcp6").write_text(TCP6)
    (proc / "loadavg").write_text(load + "\n")
    (proc / "stat").write_text("cpu 1\n" + "".join(f"cpu{i} 1\n" for i in range(16)))
    (proc / "sys" / "kernel" / "random" / "boot_id").write_text("8732c567-d206-4e7b-923a-6403c4a6278d\n")
    smi = root / "usr" / "bin" / "nvidia-smi"
    smi.parent.mkdir(parents=True)
    (root / "gpu.csv").write_text(gpu_csv)
    (root / "apps.csv").write_text(apps_csv)
    smi.write_text(
        '#!/bin/sh\ncase "$1" in\n'
        f"  --query-gpu=*) cat '{root}/gpu.csv' ;;\n"
        f"  --query-compute-apps=*) cat '{root}/apps.csv' ;;\n"
        "  *) echo 'unexpected' ; exit 2 ;;\nesac\n"
    )
    smi.chmod(0o755)
    return smi


def test_one_sample_holds_every_signal(tmp_path):
    smi = make_fake_box(tmp_path, H100["busy"]["gpu_csv"], H100["busy"]["apps_csv"])
    config = AgentConfig(nvidia_smi=str(smi))
    sample = take_sample(config, Paths(root=str(tmp_path), proc=str(tmp_path / "proc")))

    assert sample["boot_id"] == "8732c567-d206-4e7b-923a-6403c4a6278d"
    assert set(sample) >= {"t", "mono", "gpu", "cpu", "ssh", "jupyter", "lease", "cloud_init"}
    states = {name: r.state for name, r in read_signals(sample, config).items()}
    assert states == {
        "gpu": "active",
        "cpu": "quiet",
        "ssh": "active",
        "jupyter": "quiet",
        "lease": "quiet",
        "cloud_init": "quiet",
    }
