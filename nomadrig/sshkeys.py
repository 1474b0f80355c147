"""Recognise an SSH public key, and the common ways people paste something else.

A box is useless to a nomad whose key is wrong, and a pasted private key is a
leak: both must be caught before anything is provisioned.

The line also lands, as written, in authorized_keys (through cloud-init and
Ansible's authorized_key module), which split it at CR, vertical tab, form
feed, U+0085 and U+2028 as well as at newlines: a comment holding one of them
would turn one validated key into several, the later ones with options such as
``command=`` or ``from=``. So a key line may hold printable ASCII only. A
comment with Jinja's ``{{``, ``{%`` or ``{#`` is refused too: nothing needs
them, although Ansible receives every team-file value marked unsafe anyway
(never templated), so this is a second wall, not the only one.
"""

from __future__ import annotations

import base64
import binascii
import struct

from nomadrig.errors import ValueProblem, describe_char, first_unprintable, shown

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
TEMPLATE_MARKERS = ("{{", "{%", "{#")
COMMENT_FIX = "Keep the comment to printable ASCII without template markers, e.g. ada@laptop (edit the text after " \
              "the base64 part), or paste the line from the .pub file again."


class SshKeyProblem(ValueProblem):
    """Not one OpenSSH public key line; the fix says what to paste instead."""


def _read_string(blob: bytes, offset: int) -> tuple[bytes, int]:
    if offset + 4 > len(blob):
        raise ValueError("truncated")
    (length,) = struct.unpack(">I", blob[offset : offset + 4])
    end = offset + 4 + length
    if end > len(blob):
        raise ValueError("truncated")
    return blob[offset + 4 : end], end


def _check_characters(line: str) -> None:
    """Printable ASCII only, and no template markers in the comment: see the module's docstring for why."""
    bad = first_unprintable(line)
    if bad is not None:
        index, char = bad
        raise SshKeyProblem(
            f"the key line holds {describe_char(char)} at character {index + 1}; only printable ASCII may appear "
            "(authorized_keys reads CR, vertical tab, form feed, U+0085 and U+2028 as line breaks, so one key "
            "would become several).", COMMENT_FIX)
    for marker in TEMPLATE_MARKERS:  # the type and the base64 body cannot hold braces: only the comment can
        if marker in line:
            raise SshKeyProblem(f"the key's comment holds {marker!r} (template syntax).", COMMENT_FIX)


def check_public_key(text: str) -> str:
    """Return the key's type if `text` is one valid OpenSSH public key line; else raise SshKeyProblem."""
    value = text.strip()
    pub_hint = "Paste the public key instead (the line in ~/.ssh/id_ed25519.pub)."
    if value.startswith("-----BEGIN") or ("PRIVATE KEY" in value and not value.startswith(PUBLIC_KEY_TYPES)):
        raise SshKeyProblem("this is a private key; it must never be shared.",
                            pub_hint + " Then treat the pasted private key as leaked and replace it.")
    if value.startswith(("PuTTY-User-Key-File", "---- BEGIN SSH2")):
        raise SshKeyProblem("this is a PuTTY/SSH2 key file, not an OpenSSH public key line.",
                            "Run `ssh-keygen -i -f KEY.pub` (or PuTTYgen: 'Public key for pasting') "
                            "and paste its output.")
    if value.startswith(("~", "/", "./")) or (len(value.split()) == 1 and value.endswith(".pub")):
        raise SshKeyProblem(f"{shown(value)} looks like a file path, not a key.",
                            "Paste the content of the .pub file, not its path.")
    if "\n" in value:
        raise SshKeyProblem("the key spans several lines.", "Paste exactly one line: '<type> <base64> [comment]'.")
    _check_characters(value)
    parts = value.split()  # printable ASCII: spaces are the only whitespace left
    if len(parts) < 2:
        raise SshKeyProblem(f"{shown(value)} is not an SSH public key.",
                            "Expected '<type> <base64> [comment]', e.g. the line in ~/.ssh/id_ed25519.pub.")
    key_type, body = parts[0], parts[1]
    if key_type == "ssh-dss":
        raise SshKeyProblem("DSA keys are obsolete and refused by current OpenSSH.",
                            "Make a new key with `ssh-keygen -t ed25519` and paste the .pub line.")
    if key_type not in PUBLIC_KEY_TYPES:
        raise SshKeyProblem(f"unknown key type {shown(key_type)}.", f"Use one of: {', '.join(PUBLIC_KEY_TYPES)}.")
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
