"""Passwords: generation, and the two hashed password-file formats the brokers read.

- mosquitto (2.x `mosquitto_passwd`): `user:$7$<iterations>$<base64 salt>$<base64 PBKDF2-HMAC-SHA512>`, with a
  12-byte salt and 101 iterations, exactly as `mosquitto_passwd` writes it;
- amqtt's `FileAuthPlugin`: `user:<argon2id hash>` (pwdlib's Argon2 hasher).

The passwords are 192-bit random strings, not human choices, so a slow hash adds no protection; what it would add
is latency: amqtt verifies in its event loop, and argon2's defaults (64 MiB, 3 passes) take ~0.4 s per CONNECT on
a 2-core board, stalling every client meanwhile. So the argon2 parameters are light (8 MiB, 1 pass), like
mosquitto's 101 PBKDF2 iterations.

Salts are random, so hashing twice gives different lines; `keep_or_hash` reuses an existing line whose hash still
verifies the password, which keeps re-rendered files byte-identical (and Ansible runs unchanged).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping

PASSWORD_BYTES = 24
MOSQUITTO_ITERATIONS = 101
MOSQUITTO_SALT_BYTES = 12
ARGON2_TIME_COST, ARGON2_MEMORY_KIB, ARGON2_PARALLELISM = 1, 8192, 1


def new_password() -> str:
    """A random URL-safe password (24 random bytes, 32 characters)."""
    return secrets.token_urlsafe(PASSWORD_BYTES)


def mosquitto_hash(password: str, salt: bytes | None = None, iterations: int = MOSQUITTO_ITERATIONS) -> str:
    """The `$7$` PBKDF2-SHA512 hash mosquitto 2.x stores in its password file."""
    salt = salt if salt is not None else secrets.token_bytes(MOSQUITTO_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def mosquitto_verify(password: str, hashed: str) -> bool:
    """True when `hashed` (a `$7$` line value) is the hash of `password`."""
    try:
        _, kind, iterations, salt, digest = hashed.split("$")
        if kind != "7":
            return False
        expected = hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(salt), int(iterations))
    except ValueError:  # a malformed line (wrong field count, bad base64 or number) just does not verify
        return False
    return hmac.compare_digest(expected, base64.b64decode(digest))


def argon2_hash(password: str) -> str:
    from pwdlib.hashers.argon2 import Argon2Hasher

    return Argon2Hasher(ARGON2_TIME_COST, ARGON2_MEMORY_KIB, ARGON2_PARALLELISM).hash(password)


def argon2_verify(password: str, hashed: str) -> bool:
    from pwdlib.hashers.argon2 import Argon2Hasher

    hasher = Argon2Hasher()  # verification reads the parameters from the hash itself
    return hasher.identify(hashed) and hasher.verify(password, hashed)


def parse_password_file(text: str) -> dict[str, str]:
    """`user:hash` lines -> {user: hash} (comments and blank lines skipped)."""
    entries: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and ":" in line:
            user, hashed = line.split(":", 1)
            entries[user] = hashed
    return entries


def keep_or_hash(
    passwords: Mapping[str, str],
    existing: Mapping[str, str],
    hash_password: Callable[[str], str],
    verify: Callable[[str, str], bool],
) -> str:
    """Password-file text for `passwords`, reusing each existing hash that still verifies."""
    lines = []
    for user, password in sorted(passwords.items()):
        old = existing.get(user)
        lines.append(f"{user}:{old if old and verify(password, old) else hash_password(password)}")
    return "\n".join(lines) + "\n"
