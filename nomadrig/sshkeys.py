"""Recognise an SSH public key, and the common ways people paste something else.

A box is useless to a nomad whose key is wrong, and a pasted private key is a
leak: both must be caught before anything is provisioned.
"""

from __future__ import annotations

import base64
import binascii
import struct

PUBLIC_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
MIN_RSA_BITS = 2048


class SshKeyProblem(ValueError):
    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


def _read_string(blob: bytes, offset: int) -> tuple[bytes, int]:
    if offset + 4 > len(blob):
        raise ValueError("truncated")
    (length,) = struct.unpack(">I", blob[offset : offset + 4])
    end = offset + 4 + length
    if end > len(blob):
        raise ValueError("truncated")
    return blob[offset + 4 : end], end


def check_public_key(text: str) -> str:
    """Return the key's type if `text` is one valid OpenSSH public key line; else raise SshKeyProblem."""
    value = text.strip()
    pub_hint = "Paste the public key instead (the line in ~/.ssh/id_ed25519.pub)."
    if "PRIVATE KEY" in value or value.startswith("-----BEGIN"):
        raise SshKeyProblem("this is a private key; it must never be shared.",
                            pub_hint + " Then treat the pasted private key as leaked and replace it.")
    if value.startswith(("PuTTY-User-Key-File", "---- BEGIN SSH2")):
        raise SshKeyProblem("this is a PuTTY/SSH2 key file, not an OpenSSH public key line.",
                            "Run `ssh-keygen -i -f KEY.pub` (or PuTTYgen: 'Public key for pasting') "
                            "and paste its output.")
    if value.startswith(("~", "/", "./")) or value.endswith(".pub"):
        raise SshKeyProblem(f"{value!r} looks like a file path, not a key.",
                            "Paste the content of the .pub file, not its path.")
    if "\n" in value:
        raise SshKeyProblem("the key spans several lines.", "Paste exactly one line: '<type> <base64> [comment]'.")
    parts = value.split()
    if len(parts) < 2:
        raise SshKeyProblem(f"{value[:40]!r} is not an SSH public key.",
                            "Expected '<type> <base64> [comment]', e.g. the line in ~/.ssh/id_ed25519.pub.")
    key_type, body = parts[0], parts[1]
    if key_type == "ssh-dss":
        raise SshKeyProblem("DSA keys are obsolete and refused by current OpenSSH.",
                            "Make a new key with `ssh-keygen -t ed25519` and paste the .pub line.")
    if key_type not in PUBLIC_KEY_TYPES:
        raise SshKeyProblem(f"unknown key type {key_type!r}.", f"Use one of: {', '.join(PUBLIC_KEY_TYPES)}.")
    try:
        blob = base64.b64decode(body, validate=True)
        embedded, offset = _read_string(blob, 0)
    except (binascii.Error, ValueError):
        raise SshKeyProblem("the key's base64 body is damaged (truncated or altered while copying).",
                            "Copy the whole line again from the .pub file.") from None
    if embedded.decode(errors="replace") != key_type:
        raise SshKeyProblem(
            f"the key says {key_type!r} but its body is a {embedded.decode(errors='replace')!r} key.",
            "Copy the whole line again from the .pub file without editing it.",
        )
    if key_type == "ssh-rsa":
        try:
            _exponent, offset = _read_string(blob, offset)
            modulus, _ = _read_string(blob, offset)
        except ValueError:
            raise SshKeyProblem("the RSA key body is truncated.", "Copy the whole line again.") from None
        bits = int.from_bytes(modulus, "big").bit_length()
        if bits < MIN_RSA_BITS:
            raise SshKeyProblem(f"this RSA key has only {bits} bits.",
                                f"Use at least {MIN_RSA_BITS} bits, or better `ssh-keygen -t ed25519`.")
    return key_type
