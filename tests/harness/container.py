"""One booted Debian container: systemd as PID 1, sshd, its own veth address.

Lifecycle: ``DebianContainer(spec, workdir).boot()`` copies a cached root file
system, writes the per-test pieces (SSH key, apt proxy, admin account,
NoCloud seed), boots it with ``systemd-nspawn -b --network-veth`` and puts
10.231.N.2/30 on the container side and 10.231.N.1/30 on the host side. The
container has no route out: apt goes through the host's apt-cacher-ng on
10.231.N.1. ``close()`` always leaves nothing behind (process, veth, tree),
whether or not the test passed.
"""

from __future__ import annotations

import fcntl
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tests.harness.prereqs import APT_PROXY_PORT, HTTPS_PROXY_PORT, port_listening
from tests.harness.rootfs import cached_rootfs

SUBNET_PREFIX = "10.231"
LOCK_DIR = Path("/run/nomadrig-tests")
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ContainerError(RuntimeError):
    """The container did not boot, answer or stop as expected."""


@dataclass(frozen=True)
class ContainerSpec:
    """What to boot: a release plus the per-test extras."""

    release: str
    extra_packages: tuple[str, ...] = ()
    #: An account with passwordless sudo and the test key, like the admin
    #: account a Debian installer creates; None for root-only access.
    admin_user: str | None = "admin"
    #: NoCloud seed files (name -> content), e.g. user-data and meta-data.
    nocloud_seed: Mapping[str, str] = field(default_factory=dict)
    #: Host directory -> container path, mounted read-only.
    bind_ro: Mapping[str, str] = field(default_factory=dict)
    #: Path inside the tree -> content, written before boot in place of what is there.
    files: Mapping[str, str | bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class CommandResult:
    """What a command inside the container did."""

    argv: Sequence[str]
    returncode: int
    stdout: str
    stderr: str

    def check(self) -> CommandResult:
        if self.returncode != 0:
            raise ContainerError(
                f"{shlex.join(self.argv)} exited {self.returncode}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"
            )
        return self


def _claim_subnet() -> tuple[int, IO[str]]:
    """Reserve a free 10.231.N.0/30 for this container.

    A lock file per N (held open for the container's life) keeps parallel
    test processes apart; an address already on a host link (a crashed earlier
    run) also makes N unavailable.
    """
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    in_use = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True, check=True).stdout
    for n in range(1, 255):
        if f" {SUBNET_PREFIX}.{n}." in in_use:
            continue
        handle = open(LOCK_DIR / f"subnet-{n}.lock", "w")  # noqa: SIM115 - held for the container's life
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        return n, handle
    raise ContainerError(f"no free {SUBNET_PREFIX}.N.0/30 subnet left for a test container")


class DebianContainer:
    """A booted Debian test machine; use as a context manager or call close()."""

    def __init__(self, spec: ContainerSpec, workdir: Path, ssh_key: Path) -> None:
        self.spec = spec
        self.workdir = workdir
        self.ssh_key = ssh_key
        self.rootfs = workdir / "rootfs"
        self.boot_log = workdir / "boot.log"
        self.subnet, self._subnet_lock = _claim_subnet()
        self.name = f"nrt{self.subnet}"
        self.host_ip = f"{SUBNET_PREFIX}.{self.subnet}.1"
        self.ip = f"{SUBNET_PREFIX}.{self.subnet}.2"
        self.veth = f"ve-{self.name}"
        self._process: subprocess.Popen[bytes] | None = None
        self._leader: int | None = None

    # -- lifecycle ---------------------------------------------------------

    def boot(self, timeout: float = 90.0) -> DebianContainer:
        """Prepare the tree, start systemd-nspawn, address the veth pair, wait for sshd."""
        try:
            self._prepare_rootfs()
            self._start()
            self._configure_network(timeout)
            self.wait_for_ssh(timeout)
        except BaseException:
            self.close()
            raise
        return self

    def __enter__(self) -> DebianContainer:
        return self.boot()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def leader_pid(self) -> int:
        """PID (in the host's namespace) of the container's systemd."""
        if self._leader is None:
            raise ContainerError(f"{self.name} is not running")
        return self._leader

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _prepare_rootfs(self) -> None:
        source = cached_rootfs(self.spec.release, self.spec.extra_packages)
        self.workdir.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-a", "--reflink=auto", str(source), str(self.rootfs)], check=True)
        root = self.rootfs
        (root / "etc" / "hostname").write_text(f"{self.name}\n")
        hosts = f"127.0.0.1\tlocalhost\n127.0.1.1\t{self.name}\n"
        (root / "etc" / "hosts").write_text(hosts)
        public_key = self.ssh_key.with_suffix(".pub").read_text()
        self._authorize(root / "root", public_key, uid=0, gid=0)
        proxy = [f'Acquire::http::Proxy "http://{self.host_ip}:{APT_PROXY_PORT}";']
        if port_listening(HTTPS_PROXY_PORT):
            proxy.append(f'Acquire::https::Proxy "http://{self.host_ip}:{HTTPS_PROXY_PORT}";')
        (root / "etc" / "apt" / "apt.conf.d" / "01nomadrig-test-proxy").write_text("\n".join(proxy) + "\n")
        # The package lists are empty; make them look old too, so a role's
        # `cache_valid_time` triggers the `apt-get update` a stale tower needs.
        os.utime(root / "var" / "lib" / "apt" / "lists", (0, 0))
        if self.spec.admin_user:
            self._create_admin(self.spec.admin_user, public_key)
        if self.spec.nocloud_seed:
            seed = root / "var" / "lib" / "cloud" / "seed" / "nocloud"
            seed.mkdir(parents=True, exist_ok=True)
            for name, content in self.spec.nocloud_seed.items():
                (seed / name).write_text(content)
        for relative, data in self.spec.files.items():
            target = root / relative.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)  # a symlink (/etc/os-release) is replaced, not followed
            target.write_bytes(data.encode() if isinstance(data, str) else data)

    def _create_admin(self, user: str, public_key: str) -> None:
        subprocess.run(
            ["chroot", str(self.rootfs), "useradd", "--create-home", "--shell", "/bin/bash", user],
            check=True,
            capture_output=True,
        )
        sudoers = self.rootfs / "etc" / "sudoers.d" / f"90-{user}"
        sudoers.write_text(f"{user} ALL=(ALL) NOPASSWD:ALL\n")
        sudoers.chmod(0o440)
        passwd = (self.rootfs / "etc" / "passwd").read_text().splitlines()
        entry = next(line.split(":") for line in passwd if line.startswith(f"{user}:"))
        self._authorize(self.rootfs / "home" / user, public_key, uid=int(entry[2]), gid=int(entry[3]))

    @staticmethod
    def _authorize(home: Path, public_key: str, uid: int, gid: int) -> None:
        ssh_dir = home / ".ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        keys = ssh_dir / "authorized_keys"
        keys.write_text(public_key)
        keys.chmod(0o600)
        for path in (ssh_dir, keys):
            os.chown(path, uid, gid)

    def _start(self) -> None:
        cmd = [
            "systemd-nspawn",
            "--register=no",
            "--keep-unit",
            "--quiet",
            f"--directory={self.rootfs}",
            f"--machine={self.name}",
            "--boot",
            "--network-veth",
            "--console=read-only",
        ]
        cmd += [f"--bind-ro={host}:{inside}" for host, inside in self.spec.bind_ro.items()]
        log = open(self.boot_log, "wb")  # noqa: SIM115 - handed to the child process
        self._process = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    def _find_leader(self, deadline: float) -> int:
        """The container's init: nspawn's child in both a new PID and a new network namespace.

        nspawn forks helpers too (an outer child that exits, and others), so
        a child merely in another namespace is not enough.
        """
        assert self._process is not None
        pid = self._process.pid
        own = {ns: os.readlink(f"/proc/{pid}/ns/{ns}") for ns in ("pid", "net")}
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ContainerError(f"systemd-nspawn exited {self._process.returncode}:\n{self._log_tail()}")
            try:
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except FileNotFoundError:
                children = []
            for child in children:
                try:
                    if all(os.readlink(f"/proc/{child}/ns/{ns}") != own[ns] for ns in own):
                        return int(child)
                except FileNotFoundError:
                    continue  # exited between listing and reading
            time.sleep(0.1)
        raise ContainerError(f"{self.name}: systemd-nspawn started no container init:\n{self._log_tail()}")

    def _configure_network(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self._leader = self._find_leader(deadline)
        while subprocess.run(["ip", "link", "show", self.veth], capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                raise ContainerError(f"{self.veth} never appeared on the host")
            time.sleep(0.1)
        while True:
            in_container = ["nsenter", "-t", str(self._leader), "-n"]
            if subprocess.run([*in_container, "ip", "link", "show", "host0"], capture_output=True).returncode == 0:
                break
            if time.monotonic() > deadline:
                raise ContainerError(f"{self.name}: host0 never appeared inside the container:\n{self._log_tail()}")
            time.sleep(0.1)
            self._leader = self._find_leader(deadline)
        host_side = [
            ["ip", "addr", "add", f"{self.host_ip}/30", "dev", self.veth],
            ["ip", "link", "set", self.veth, "up"],
        ]
        inside = [
            ["ip", "addr", "add", f"{self.ip}/30", "dev", "host0"],
            ["ip", "link", "set", "host0", "up"],
            ["ip", "route", "add", "default", "via", self.host_ip],
        ]
        for argv in host_side:
            subprocess.run(argv, check=True, capture_output=True)
        for argv in inside:
            # The host's `ip` in the container's network namespace only: no
            # need for iproute2 inside, and nothing else of the host leaks in.
            subprocess.run([*in_container, *argv], check=True, capture_output=True)

    def close(self, timeout: float = 30.0) -> None:
        """Stop the container (poweroff, then SIGTERM, then SIGKILL), drop its veth and tree."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)  # nspawn asks the container's systemd to power off
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait(10)
        self._leader = None
        if subprocess.run(["ip", "link", "show", self.veth], capture_output=True).returncode == 0:
            subprocess.run(["ip", "link", "del", self.veth], capture_output=True)
        if self.rootfs.exists():
            shutil.rmtree(self.rootfs, ignore_errors=True)
        if not self._subnet_lock.closed:
            self._subnet_lock.close()

    # -- helpers for tests -------------------------------------------------

    def known_hosts_line(self) -> str:
        """The container's ed25519 host key as a known_hosts line: its key is new on every boot, and a test
        that checks host keys as a user would (Mitogen's strategy enforces them) names a file holding it."""
        key_type, key = self.run("cat /etc/ssh/ssh_host_ed25519_key.pub", check=True).stdout.split()[:2]
        return f"{self.ip} {key_type} {key}\n"

    def run(self, command: str | Sequence[str], timeout: float = 120.0, check: bool = False) -> CommandResult:
        """Run a command inside the container's namespaces (not over SSH).

        A string runs through ``/bin/sh -c``. Independent of sshd, so it still
        works after hardening changed who may log in.
        """
        argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
        nsenter = ["nsenter", "-t", str(self.leader_pid), "-m", "-u", "-i", "-n", "-p", "--"]
        env = {"PATH": CONTAINER_PATH, "LANG": "C.UTF-8", "HOME": "/root"}
        done = subprocess.run([*nsenter, *argv], capture_output=True, text=True, timeout=timeout, env=env)
        result = CommandResult(argv, done.returncode, done.stdout, done.stderr)
        return result.check() if check else result

    def ssh_argv(self, user: str = "root") -> list[str]:
        """The ssh command line that reaches this container as user."""
        return [
            "ssh",
            "-i",
            str(self.ssh_key),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=5",
            f"{user}@{self.ip}",
        ]

    def ssh(self, command: str, user: str = "root", timeout: float = 120.0) -> CommandResult:
        """Run a command over real SSH, as Ansible would reach the machine."""
        argv = [*self.ssh_argv(user), command]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        return CommandResult(argv, done.returncode, done.stdout, done.stderr)

    def wait_for_ssh(self, timeout: float = 60.0, user: str | None = None) -> None:
        """Block until sshd accepts our key (as the admin user, else root)."""
        user = user or self.spec.admin_user or "root"
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if not self.running:
                raise ContainerError(f"{self.name} stopped while waiting for SSH:\n{self._log_tail()}")
            last = self.ssh("true", user=user, timeout=10)
            if last.returncode == 0:
                return
            time.sleep(0.5)
        detail = last.stderr if last else ""
        raise ContainerError(f"{self.name}: no SSH as {user}@{self.ip} within {timeout:.0f} s: {detail}")

    def wait_for_poweroff(self, timeout: float = 60.0) -> int:
        """Wait until the container's systemd has powered it off; return nspawn's exit code."""
        if self._process is None:
            raise ContainerError(f"{self.name} was never booted")
        try:
            code = self._process.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            message = f"{self.name} still running {timeout:.0f} s after the poweroff was expected"
            raise ContainerError(message) from exc
        self._leader = None
        return code

    def copy_in(self, source: Path, destination: str, mode: int | None = None) -> Path:
        """Copy a host file or directory into the container's file system.

        The tree is a plain directory, so this is a host-side copy that the
        running container sees at once.
        """
        target = self.rootfs / destination.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target)
        if mode is not None:
            target.chmod(mode)
        return target

    def _log_tail(self, chars: int = 3000) -> str:
        try:
            return self.boot_log.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return "(no boot log)"
