"""`nomadrig ssh-config`: the managed block in ~/.ssh/config (HOME in a tmp dir, never the real one)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nomadrig.errors import BadInputError
from nomadrig.spec import box_specs
from nomadrig.sshconfig import box_accesses, merge_block, render_block, write_block
from nomadrig.team.load import load_team
from tests.fake_pulumi import FakePulumi

REPO = Path(__file__).resolve().parent.parent
TEAM_FILE = REPO / "examples" / "team.yaml"

USER_CONFIG = (
    "# my own settings\n"
    "Host *\n"
    "    AddKeysToAgent yes\n"
    "\n"
    "Host github.com\n"
    "    User git\n"
    "    IdentityFile ~/.ssh/id_github\n"
)


@pytest.fixture
def specs():
    return box_specs(load_team(TEAM_FILE))  # ada (aws eu-west-1), grace (gcp us-central1), linus (aws us-east-1)


OUTPUTS = {
    "vision-lab--ada": {"instance_id": "i-0abc123def4567890", "data_volume_id": "vol-0abc"},
    "vision-lab--grace": {
        "instance_name": "vision-lab--grace",
        "zone": "us-central1-b",
        "project": "vision-lab-research",
    },
    "vision-lab--linus": None,  # never deployed
}


def test_aws_host_goes_through_ssm_to_the_instance_id(specs):
    block = render_block("vision-lab", box_accesses(specs, OUTPUTS))
    assert (
        "Host vision-lab--ada\n"
        "    HostName i-0abc123def4567890\n"
        "    User ada\n"
        "    ProxyCommand aws ssm start-session --target %h --document-name AWS-StartSSHSession "
        "--parameters 'portNumber=%p' --region eu-west-1\n"
        "    LocalForward 8888 localhost:8888\n"
    ) in block


def test_gcp_host_goes_through_an_iap_tunnel_in_the_boxs_zone(specs):
    block = render_block("vision-lab", box_accesses(specs, OUTPUTS))
    assert (
        "Host vision-lab--grace\n"
        "    HostName vision-lab--grace\n"
        "    User grace\n"
        "    ProxyCommand gcloud compute start-iap-tunnel vision-lab--grace %p --listen-on-stdin "
        "--project=vision-lab-research --zone=us-central1-b\n"
        "    LocalForward 8889 localhost:8888\n"
    ) in block


def test_box_not_deployed_yet_gets_a_note_instead_of_a_host(specs):
    accesses = box_accesses(specs, OUTPUTS)
    block = render_block("vision-lab", accesses)
    assert "Host vision-lab--linus" not in block
    assert "# vision-lab--linus: no instance (not up yet, or down)" in block and "nomadrig up linus" in block
    assert [a.local_port for a in accesses] == [8888, 8889, 8890]  # distinct, stable by team-file order


def test_block_is_delimited_by_the_team_markers(specs):
    block = render_block("vision-lab", box_accesses(specs, OUTPUTS))
    lines = block.splitlines()
    assert lines[0] == "# BEGIN nomadrig vision-lab"
    assert lines[-1] == "# END nomadrig vision-lab"


def test_merge_appends_after_the_users_entries_and_keeps_them_byte_for_byte():
    block = "# BEGIN nomadrig t\nHost t-a\n# END nomadrig t\n"
    merged = merge_block(USER_CONFIG, "t", block)
    assert merged.startswith(USER_CONFIG)
    assert merged == USER_CONFIG + "\n" + block


def test_merge_replaces_the_block_in_place_and_leaves_other_teams_alone():
    other = "# BEGIN nomadrig other\nHost other-x\n# END nomadrig other\n"
    old = "# BEGIN nomadrig t\nHost t-old\n# END nomadrig t\n"
    text = "Host a\n    User x\n\n" + old + "\n" + other + "Host z\n"
    new = "# BEGIN nomadrig t\nHost t-new\n# END nomadrig t\n"
    assert merge_block(text, "t", new) == "Host a\n    User x\n\n" + new + "\n" + other + "Host z\n"


def test_merge_collapses_duplicate_blocks_into_one():
    old = "# BEGIN nomadrig t\nHost t-old\n# END nomadrig t\n"
    new = "# BEGIN nomadrig t\nHost t-new\n# END nomadrig t\n"
    merged = merge_block("Host a\n" + old + "Host b\n" + old, "t", new)
    assert merged == "Host a\n" + new + "Host b\n"


def test_a_broken_block_is_refused_with_its_line():
    text = "Host a\n# BEGIN nomadrig t\nHost t-a\n"
    with pytest.raises(BadInputError) as caught:
        merge_block(text, "t", "# BEGIN nomadrig t\n# END nomadrig t\n", "/home/u/.ssh/config")
    assert "/home/u/.ssh/config:2" in str(caught.value)
    assert "without a matching" in str(caught.value)


def test_write_creates_ssh_dir_0700_and_file_0600(tmp_path):
    path = tmp_path / "home" / ".ssh" / "config"
    result = write_block("t", "# BEGIN nomadrig t\n# END nomadrig t\n", path)
    assert result.changed and result.backup is None
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_write_twice_changes_nothing_the_second_time_and_keeps_a_backup(tmp_path):
    path = tmp_path / ".ssh" / "config"
    path.parent.mkdir(mode=0o700)
    path.write_text(USER_CONFIG)
    path.chmod(0o644)
    block = "# BEGIN nomadrig t\nHost t-a\n# END nomadrig t\n"

    first = write_block("t", block, path)
    after_first = path.read_bytes()
    second = write_block("t", block, path)

    assert first.changed and first.backup is not None
    assert first.backup.read_text() == USER_CONFIG
    assert not second.changed
    assert path.read_bytes() == after_first
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # the user's mode is kept
    assert not [p for p in path.parent.iterdir() if ".nomadrig-" in p.name]  # no temp files left


def test_write_through_a_symlinked_config_keeps_the_link(tmp_path):
    real = tmp_path / "dotfiles" / "ssh_config"
    real.parent.mkdir()
    real.write_text(USER_CONFIG)
    link = tmp_path / ".ssh" / "config"
    link.parent.mkdir()
    link.symlink_to(real)
    write_block("t", "# BEGIN nomadrig t\n# END nomadrig t\n", link)
    assert link.is_symlink()
    assert real.read_text().startswith(USER_CONFIG) and "# BEGIN nomadrig t" in real.read_text()


def test_cli_write_twice_leaves_one_block_and_the_users_entries_unchanged(monkeypatch, tmp_path):
    fake = FakePulumi.install(monkeypatch, tmp_path)
    fake.scenario(
        outputs={
            "vision-lab--ada": {
                "instance_id": "i-0feedbeef00c0ffee",
                "data_volume_id": "vol-0feed",
                "nomad": "ada",
                "cloud": "aws",
                "region": "eu-west-1",
            }
        }
    )
    home = tmp_path / "user-home"
    (home / ".ssh").mkdir(parents=True)
    config = home / ".ssh" / "config"
    config.write_text(USER_CONFIG)
    monkeypatch.setenv("HOME", str(home))
    from nomadrig.cli import app

    runner = CliRunner()
    up = runner.invoke(app, ["up", "ada", "--yes", "--team", str(TEAM_FILE)])
    assert up.exit_code == 0, up.output
    first = runner.invoke(app, ["ssh-config", "--write", "--team", str(TEAM_FILE)])
    second = runner.invoke(app, ["ssh-config", "--write", "--team", str(TEAM_FILE)])

    assert first.exit_code == 0 and second.exit_code == 0, (first.output, second.output)
    text = config.read_text()
    assert text.count("# BEGIN nomadrig vision-lab") == 1 and text.count("# END nomadrig vision-lab") == 1
    assert text.startswith(USER_CONFIG)
    assert "Host vision-lab--ada\n    HostName i-0feedbeef00c0ffee\n" in text
    assert "already up to date" in second.output
    assert (home / ".ssh" / "config.nomadrig.bak").read_text() == USER_CONFIG


def test_cli_without_write_prints_the_block_and_touches_nothing(monkeypatch, tmp_path):
    FakePulumi.install(monkeypatch, tmp_path)
    home = tmp_path / "user-home"
    monkeypatch.setenv("HOME", str(home))
    from nomadrig.cli import app

    result = CliRunner().invoke(app, ["ssh-config", "--team", str(TEAM_FILE)])
    assert result.exit_code == 0, result.output
    assert "# BEGIN nomadrig vision-lab" in result.stdout
    assert "# vision-lab--ada: no instance (not up yet, or down)" in result.stdout
    assert not (home / ".ssh").exists()


def test_a_login_name_from_the_outputs_replaces_the_nomad_as_user(specs):
    outputs = {**OUTPUTS, "vision-lab--grace": {**OUTPUTS["vision-lab--grace"], "ssh_user": "grace_vision_lab_example"}}
    block = render_block("vision-lab", box_accesses(specs, outputs))
    assert "Host vision-lab--grace\n    HostName vision-lab--grace\n    User grace_vision_lab_example\n" in block
    assert "Host vision-lab--ada\n    HostName i-0abc123def4567890\n    User ada\n" in block
