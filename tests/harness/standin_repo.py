"""A local, signed apt repository of stand-in packages, built on the host for a test container.

What it models: an archive that publishes a newer build of packages a tower
already runs (Debian's security archive releasing a new build of the driver
branch) or packages of another branch. What it proves: how the roles and apt
(pins, version choice, signature checking, upgrades) treat such an archive.
What it does not: that the real archive's packages of that version install
or work; a stand-in is a real package re-versioned, or an empty one.

Everything is built with dpkg-deb and gpg; the index files are written here
in the format apt reads (deb-control fields, a flat repository's
``Packages`` and an ``InRelease`` signed with a throwaway key).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

#: Marks every stand-in's version and description, so nothing mistakes one for an archive package.
STANDIN_TAG = "nomadrig.standin"


@dataclass(frozen=True)
class SignedRepo:
    """A flat apt repository (``deb [signed-by=keyring] file:<root> ./``) and the keyring that verifies it."""

    root: Path
    keyring: Path

    def sources_entry(self, root_in_target: str, keyring_in_target: str) -> str:
        """A deb822 sources stanza for it, as seen from inside the container it is copied into."""
        return (f"Types: deb\nURIs: file:{root_in_target}\nSuites: ./\n"
                f"Signed-By: {keyring_in_target}\n")


def control_of(deb: Path) -> str:
    """The package's control file, as dpkg-deb prints it."""
    return subprocess.run(["dpkg-deb", "-f", str(deb)], check=True, capture_output=True, text=True).stdout


def reversion(deb: Path, out_dir: Path, versions: dict[str, str]) -> Path:
    """A copy of deb whose control file has each old version string replaced by its new one.

    ``versions`` maps old to new, longest first applied first (full versions
    before bare upstream versions), so ``Version``, exact ``Depends`` and
    versioned ``Provides`` stay consistent across a set of packages. The
    files inside are untouched.
    """
    with tempfile.TemporaryDirectory(prefix="standin-", dir=out_dir) as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["dpkg-deb", "-R", str(deb), str(tree)], check=True)
        control = tree / "DEBIAN" / "control"
        text = control.read_text()
        for old in sorted(versions, key=len, reverse=True):
            text = re.sub(rf"(?<![0-9.]){re.escape(old)}(?![0-9])", versions[old], text)
        text = re.sub(r"(?m)^Description: (.*)$", rf"Description: \1 ({STANDIN_TAG} rebuild)", text, count=1)
        control.write_text(text)
        package = re.search(r"(?m)^Package: (\S+)$", text)
        version = re.search(r"(?m)^Version: (\S+)$", text)
        assert package and version, text
        out = out_dir / f"{package[1]}_{version[1].replace(':', '%3a')}.deb"
        # Uncompressed: the payload is already compressed data in the driver's case, and -Znone is fast.
        subprocess.run(["dpkg-deb", "-Znone", "--root-owner-group", "-b", str(tree), str(out)],
                       check=True, capture_output=True)
    return out


def empty_package(out_dir: Path, name: str, version: str, *, source: str | None = None,
                  depends: str = "", provides: str = "", files: dict[str, str] | None = None) -> Path:
    """A package with no files (or only ``files``, path -> text, executable): what an archive's package looks
    like to apt, nothing more."""
    with tempfile.TemporaryDirectory(prefix="standin-", dir=out_dir) as tmp:
        tree = Path(tmp) / "tree"
        (tree / "DEBIAN").mkdir(parents=True)
        for path, text in (files or {}).items():
            target = tree / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            target.chmod(0o755)
        fields = {"Package": name, "Version": version, "Architecture": "amd64", "Maintainer": "nomadrig tests "
                  "<tests@nomadrig.invalid>", "Source": source, "Depends": depends, "Provides": provides,
                  "Description": f"{STANDIN_TAG}: an empty package named like the archive's {name}"}
        (tree / "DEBIAN" / "control").write_text("".join(f"{k}: {v}\n" for k, v in fields.items() if v))
        out = out_dir / f"{name}_{version.replace(':', '%3a')}.deb"
        subprocess.run(["dpkg-deb", "-Znone", "--root-owner-group", "-b", str(tree), str(out)],
                       check=True, capture_output=True)
    return out


def _index_entry(deb: Path, root: Path) -> str:
    """deb's stanza in a ``Packages`` file: its control fields plus where it is and its checksums."""
    data = deb.read_bytes()
    fields = control_of(deb).rstrip("\n")
    return (f"{fields}\nFilename: ./{deb.relative_to(root)}\nSize: {len(data)}\n"
            f"MD5sum: {hashlib.md5(data).hexdigest()}\nSHA256: {hashlib.sha256(data).hexdigest()}\n")


def build_signed_repo(debs: list[Path], root: Path, gnupg_home: Path, *, origin: str = STANDIN_TAG,
                      label: str = STANDIN_TAG, codename: str | None = None) -> SignedRepo:
    """Copy debs into a flat repository at root, index it, sign it with a new key; the repository and keyring.

    ``origin``, ``label`` and ``codename`` head its Release file (what an apt pin can select, ``Pin: release
    l=...``, and what unattended-upgrades' Origins-Pattern matches, ``origin=...,codename=...,label=...``).
    """
    root.mkdir(parents=True, exist_ok=True)
    placed = []
    for deb in debs:
        target = root / deb.name
        if deb.resolve() != target.resolve():
            shutil.copy2(deb, target)
        placed.append(target)
    packages = "\n".join(_index_entry(deb, root) for deb in sorted(placed))
    (root / "Packages").write_text(packages)
    digest = hashlib.sha256(packages.encode()).hexdigest()
    date = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S UTC")
    (root / "Release").write_text(
        f"Origin: {origin}\nLabel: {label}\n" + (f"Codename: {codename}\n" if codename else "")
        + f"Date: {date}\nArchitectures: amd64\n"
        f"SHA256:\n {digest} {len(packages.encode())} Packages\n"
    )
    gnupg_home.mkdir(mode=0o700, parents=True, exist_ok=True)
    gpg = ["gpg", "--batch", "--quiet", "--homedir", str(gnupg_home)]
    uid = f"{STANDIN_TAG} <standin@nomadrig.invalid>"
    subprocess.run([*gpg, "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "1d"], check=True)
    subprocess.run([*gpg, "--yes", "--clearsign", "-o", str(root / "InRelease"), str(root / "Release")], check=True)
    keyring = root.parent / f"{root.name}.gpg"
    keyring.write_bytes(subprocess.run([*gpg, "--export", uid], check=True, capture_output=True).stdout)
    return SignedRepo(root, keyring)
