"""One reaper per team: the lock in the state backend (file://, s3:// on moto, gs:// on a fake)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from nomadrig.errors import BadInputError
from nomadrig.reaper.lock import FileLock, GcsLock, ReaperLockHeld, S3Lock, holding, lock_for
from nomadrig.reaper.run import run_reaper

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "team.yaml"


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def test_second_file_lock_is_refused_with_who_holds_it(tmp_path):
    first = FileLock(tmp_path, "vision-lab", clock=Clock(T0), owner="ada")
    first.acquire()
    second = FileLock(tmp_path, "vision-lab", clock=Clock(T0 + timedelta(minutes=5)), owner="linus")
    with pytest.raises(ReaperLockHeld) as raised:
        second.acquire()
    assert raised.value.exit_code == 3
    message = str(raised.value)
    assert "another reaper for team vision-lab is running" in message
    assert "ada on" in message and str(first.path) in message


def test_stale_file_lock_is_taken_over_after_expiry(tmp_path):
    FileLock(tmp_path, "vision-lab", ttl=timedelta(hours=1), clock=Clock(T0), owner="crashed").acquire()
    late = FileLock(tmp_path, "vision-lab", clock=Clock(T0 + timedelta(hours=1, seconds=1)), owner="linus")
    info = late.acquire()
    assert info.owner == "linus"
    assert "linus" in late.path.read_text()


def test_released_lock_can_be_taken_and_release_never_removes_anothers_lock(tmp_path):
    stale = FileLock(tmp_path, "vision-lab", ttl=timedelta(minutes=1), clock=Clock(T0), owner="old")
    stale.acquire()
    taker = FileLock(tmp_path, "vision-lab", clock=Clock(T0 + timedelta(hours=2)), owner="new")
    taker.acquire()
    stale.release()  # the old holder wakes up and releases: it must not drop the new holder's lock
    assert "new" in taker.path.read_text()
    taker.release()
    assert not taker.path.exists()
    FileLock(tmp_path, "vision-lab", owner="third").acquire()


def test_locks_of_different_teams_do_not_conflict(tmp_path):
    FileLock(tmp_path, "vision-lab").acquire()
    FileLock(tmp_path, "nlp-lab").acquire()


def test_second_reaper_run_while_one_holds_the_lock_fails_before_touching_anything(tmp_path):
    team = SimpleNamespace(
        name="vision-lab",
        policy=SimpleNamespace(stopped_destroy_after_hours=168, max_idle_minutes=60),
        state=SimpleNamespace(backend_url=f"file://{tmp_path}"),
    )

    class NoCloud:
        cloud = "aws"

        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"the locked-out run called the cloud: {name}")

    class NoStacks:
        def list(self) -> list:
            raise AssertionError("the locked-out run listed stacks")

        def destroy(self, name: str) -> None:
            raise AssertionError("the locked-out run destroyed a stack")

    with holding(lock_for(f"file://{tmp_path}", "vision-lab")), pytest.raises(ReaperLockHeld):
        run_reaper(team, apply=True, orphans=False, stacks=NoStacks(), aws=NoCloud())  # type: ignore[arg-type]


def test_pulumi_cloud_backend_without_a_lock_location_is_bad_input_naming_the_option_to_pass():
    with pytest.raises(BadInputError) as raised:
        lock_for("https://api.pulumi.com", "vision-lab")
    assert raised.value.exit_code == 2
    (problem,) = raised.value.problems
    assert problem.path == "state.backend_url" and "Pulumi Cloud" in problem.message
    assert "--lock-url" in problem.fix and "NOMADRIG_REAPER_LOCK" in problem.fix


@pytest.mark.parametrize("url", ["azblob://state", "file://relative/dir", "file:///", "gs://"])
def test_lock_locations_that_cannot_hold_a_lock_are_refused(url):
    with pytest.raises(BadInputError) as raised:
        lock_for(url, "vision-lab", field="--lock-url")
    assert raised.value.file == "command line" and raised.value.problems[0].path == "--lock-url"


def test_the_default_backend_keeps_its_lock_under_nomadrig_home_beside_the_engines_state(tmp_path, monkeypatch):
    from nomadrig.engine.settings import resolve_backend_url
    from nomadrig.team.model import DEFAULT_BACKEND

    monkeypatch.setenv("NOMADRIG_HOME", str(tmp_path / "home"))
    lock = lock_for(DEFAULT_BACKEND, "vision-lab")
    assert lock.where == str(tmp_path / "home" / "state" / ".nomadrig" / "locks" / "reaper-vision-lab.json")
    assert resolve_backend_url(DEFAULT_BACKEND) == f"file://{Path(lock.where).parents[2]}"


class EmptyCloud:
    """A cloud with no managed instance that notes whether the lock file exists while it is asked."""

    cloud = "aws"

    def __init__(self, lock_file: Path) -> None:
        self.lock_file = lock_file
        self.locked_while_listing: bool | None = None

    def list_instances(self, team: str) -> list:
        self.locked_while_listing = self.lock_file.exists()
        return []


class NoStackAtAll:
    def list(self) -> list:
        return []

    def destroy(self, name: str) -> None:
        raise AssertionError("nothing to destroy")


def pulumi_cloud_team() -> SimpleNamespace:
    return SimpleNamespace(
        name="vision-lab",
        policy=SimpleNamespace(stopped_destroy_after_hours=168, max_idle_minutes=60),
        state=SimpleNamespace(backend_url="https://api.pulumi.com"),
    )


def test_a_lock_url_holds_the_lock_of_a_pulumi_cloud_team_for_the_run_and_releases_it(tmp_path):
    lock_file = tmp_path / ".nomadrig" / "locks" / "reaper-vision-lab.json"
    cloud = EmptyCloud(lock_file)

    report = run_reaper(pulumi_cloud_team(), apply=True, orphans=False, stacks=NoStackAtAll(), aws=cloud,  # type: ignore[arg-type]
                        lock_url=f"file://{tmp_path}")

    assert report.errors == [] and cloud.locked_while_listing is True
    assert not lock_file.exists()


def pulumi_cloud_team_file(tmp_path: Path) -> Path:
    text = EXAMPLE.read_text()
    assert "backend_url: file://~/.nomadrig/state" in text, "the example team's backend line moved"
    path = tmp_path / "team.yaml"
    path.write_text(text.replace("backend_url: file://~/.nomadrig/state", "backend_url: https://api.pulumi.com"))
    return path


def test_reap_apply_of_a_pulumi_cloud_team_exits_2_and_names_the_lock_url_option(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from nomadrig.cli import app

    monkeypatch.setenv("NOMADRIG_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("NOMADRIG_REAPER_LOCK", raising=False)
    result = CliRunner().invoke(app, ["reap", "--apply", "--team", str(pulumi_cloud_team_file(tmp_path))])

    assert result.exit_code == 2, result.output
    assert "state.backend_url: 'https://api.pulumi.com' cannot hold the reaper's lock" in result.stderr
    assert "Pass --lock-url" in result.stderr and "internal error" not in result.output
    assert "--lock-url" in CliRunner().invoke(app, ["reap", "--help"], env={"COLUMNS": "200"}).stdout


@pytest.mark.parametrize("how", ["option", "environment"])
def test_reap_refuses_a_lock_url_that_cannot_hold_a_lock_before_reading_anything(tmp_path, monkeypatch, how):
    from typer.testing import CliRunner

    from nomadrig.cli import app

    monkeypatch.setenv("NOMADRIG_HOME", str(tmp_path / "home"))
    args = ["reap", "--apply", "--team", str(tmp_path / "missing.yaml")]
    if how == "option":
        args += ["--lock-url", "azblob://locks"]
    else:
        monkeypatch.setenv("NOMADRIG_REAPER_LOCK", "azblob://locks")
    result = CliRunner().invoke(app, args)

    assert result.exit_code == 2, result.output
    assert "command line: --lock-url: 'azblob://locks' cannot hold the reaper's lock" in result.stderr


def test_backend_urls_map_to_lock_objects_next_to_the_state(tmp_path):
    assert lock_for("s3://team-state/pulumi", "vision-lab").where == (
        "s3://team-state/pulumi/.nomadrig/locks/reaper-vision-lab.json"
    )
    assert lock_for("gs://team-state", "vision-lab").where == "gs://team-state/.nomadrig/locks/reaper-vision-lab.json"
    assert lock_for(f"file://{tmp_path}", "t1").where == str(tmp_path / ".nomadrig/locks/reaper-t1.json")


# ---- s3:// against moto: S3 conditional writes (If-None-Match / If-Match) -------------------


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3(s3_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = boto3.client("s3", region_name="us-east-1")
    if "team-state" not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
        client.create_bucket(Bucket="team-state")
    for item in client.list_objects_v2(Bucket="team-state").get("Contents", []):
        client.delete_object(Bucket="team-state", Key=item["Key"])
    return client


def test_s3_lock_is_exclusive_and_taken_over_when_stale(s3):
    first = S3Lock("team-state", "pulumi", "vision-lab", ttl=timedelta(hours=1), clock=Clock(T0), owner="ada")
    first.acquire()
    second = S3Lock("team-state", "pulumi", "vision-lab", clock=Clock(T0 + timedelta(minutes=30)), owner="linus")
    with pytest.raises(ReaperLockHeld, match="ada on"):
        second.acquire()
    late = S3Lock("team-state", "pulumi", "vision-lab", clock=Clock(T0 + timedelta(hours=2)), owner="grace")
    assert late.acquire().owner == "grace"
    first.release()  # the stale holder must not remove grace's lock
    body = s3.get_object(Bucket="team-state", Key="pulumi/.nomadrig/locks/reaper-vision-lab.json")["Body"].read()
    assert b"grace" in body
    late.release()
    assert "Contents" not in s3.list_objects_v2(Bucket="team-state")


def test_s3_takeover_loses_cleanly_when_another_taker_wins(s3):
    S3Lock("team-state", "", "vision-lab", ttl=timedelta(minutes=1), clock=Clock(T0)).acquire()
    racer = S3Lock("team-state", "", "vision-lab", clock=Clock(T0 + timedelta(hours=1)), owner="racer")
    real_put = s3.put_object
    winner = S3Lock("team-state", "", "vision-lab", clock=Clock(T0 + timedelta(hours=1)), owner="winner")

    def put_after_winner(**kwargs: Any) -> Any:
        if "IfMatch" in kwargs:  # the winner replaces the stale lock between our read and our write
            winner._client = s3
            winner.acquire()
        return real_put(**kwargs)

    racer._client = SimpleNamespace(put_object=put_after_winner, get_object=s3.get_object)
    with pytest.raises(ReaperLockHeld, match="winner on"):
        racer.acquire()


# ---- gs:// with a fake bucket that enforces generation preconditions ------------------------


class PreconditionFailed(Exception):
    pass


class FakeBlob:
    def __init__(self, store: dict[str, tuple[bytes, int]], key: str) -> None:
        self.store, self.key, self.generation = store, key, None

    def _check(self, if_generation_match: int | None) -> None:
        current = self.store.get(self.key, (b"", 0))[1]
        if if_generation_match is not None and current != if_generation_match:
            raise PreconditionFailed(self.key)

    def upload_from_string(self, data: bytes, if_generation_match: int | None = None) -> None:
        self._check(if_generation_match)
        generation = self.store.get(self.key, (b"", 0))[1] + 1
        self.store[self.key] = (data, generation)
        self.generation = generation

    def reload(self) -> None:
        self.generation = self.store[self.key][1]

    def download_as_bytes(self, if_generation_match: int | None = None) -> bytes:
        self._check(if_generation_match)
        return self.store[self.key][0]

    def delete(self, if_generation_match: int | None = None) -> None:
        self._check(if_generation_match)
        del self.store[self.key]


def test_gcs_lock_uses_generation_preconditions(monkeypatch):
    import nomadrig.reaper.lock as lock_module

    monkeypatch.setattr(lock_module, "_precondition_error", lambda: PreconditionFailed)
    store: dict[str, tuple[bytes, int]] = {}
    bucket = SimpleNamespace(blob=lambda key: FakeBlob(store, key))
    first = GcsLock(
        "team-state", "", "vision-lab", ttl=timedelta(hours=1), clock=Clock(T0), owner="ada", bucket_handle=bucket
    )
    first.acquire()
    second = GcsLock(
        "team-state", "", "vision-lab", clock=Clock(T0 + timedelta(minutes=1)), owner="linus", bucket_handle=bucket
    )
    with pytest.raises(ReaperLockHeld, match="ada on"):
        second.acquire()
    late = GcsLock(
        "team-state", "", "vision-lab", clock=Clock(T0 + timedelta(hours=2)), owner="grace", bucket_handle=bucket
    )
    late.acquire()
    first.release()  # generation changed: the stale holder's delete is refused
    assert b"grace" in store[".nomadrig/locks/reaper-vision-lab.json"][0]
    late.release()
    assert store == {}


def test_cli_error_handler_turns_a_held_lock_into_exit_code_3(tmp_path, capsys):
    import typer

    from nomadrig.cli.common import handle_errors

    FileLock(tmp_path, "vision-lab", owner="ada").acquire()

    @handle_errors
    def reap() -> None:
        FileLock(tmp_path, "vision-lab", owner="linus").acquire()

    with pytest.raises(typer.Exit) as raised:
        reap()
    assert raised.value.exit_code == 3
    assert "another reaper for team vision-lab is running: ada on" in capsys.readouterr().err
