"""API keys: random or demo-derived, stored only as their sha256."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

KEY_PREFIX = "act3_"


def hash_key(key: str) -> str:
    # A key carries 256 random bits, so a plain sha256 is enough: there is nothing to brute-force.
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _encode(raw: bytes) -> str:
    return KEY_PREFIX + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def new_random_key() -> str:
    return _encode(secrets.token_bytes(32))


def new_demo_seed() -> str:
    return secrets.token_hex(32)


def demo_key(seed: str, org_name: str, role: str) -> str:
    """Demo keys are HMAC(seed, org/role): whoever can read the database (the seed) can derive them.

    That is what lets `init-demo` print the same keys twice; real keys (`keys create`) are random.
    """
    mac = hmac.new(bytes.fromhex(seed), f"demo:{org_name}:{role}".encode(), hashlib.sha256).digest()
    return _encode(mac)


def parse_bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
