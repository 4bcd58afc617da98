#!/usr/bin/env python3
"""Reference implementation of session token v2 as the Python deployment
builds and checks it (offload_backend/security.py), written from reading that
code; standard library only. The Go tests use it two ways:

  pytoken.py vectors   print test vectors (JSON) for python_vectors.json
  pytoken.py verify    read {"keys","iss","aud","cases":[{"token","now"}]} on
                       stdin, print one verdict per case as JSON

Keep this a faithful copy of the algorithm, not of the Go code.
"""

import base64
import hashlib
import hmac
import json
import sys
from datetime import UTC, datetime, timedelta

TOKEN_VERSION = 2
REQUIRED_V2_CLAIMS = frozenset({"v", "kid", "iat", "nbf", "iss", "aud", "exp", "install_id"})


class InvalidToken(Exception):
    code = "invalid_token"


class ExpiredToken(Exception):
    code = "expired_token"


def b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("utf-8").rstrip("=")


def b64decode(value: str) -> bytes:
    padding = "=" * (-len(value) % 4)
    try:
        return base64.urlsafe_b64decode(f"{value}{padding}".encode())
    except ValueError as exc:  # binascii.Error is a ValueError
        raise InvalidToken from exc


def encode(key: str, kid: str, iss: str, aud: str, install_id: str, now: datetime, ttl: int) -> str:
    issued_at = int(now.timestamp())
    expires_at = now + timedelta(seconds=ttl)
    payload = {
        "v": TOKEN_VERSION,
        "kid": kid,
        "iat": issued_at,
        "nbf": issued_at,
        "iss": iss,
        "aud": aud,
        "install_id": install_id,
        "exp": int(expires_at.timestamp()),
    }
    segment = b64encode(json.dumps(payload, separators=(",", ":")).encode("utf-8"))
    signature = hmac.new(key.encode("utf-8"), segment.encode("utf-8"), hashlib.sha256).digest()
    return f"{segment}.{b64encode(signature)}"


def require_int(payload, name):
    if name not in payload:
        raise InvalidToken
    value = payload[name]
    try:
        if isinstance(value, int):
            return value
        if isinstance(value, (str, float)):
            return int(value)
        raise TypeError
    except (TypeError, ValueError) as exc:
        raise InvalidToken from exc


def require_str(payload, name):
    if name not in payload:
        raise InvalidToken
    text = str(payload[name])
    if not text:
        raise InvalidToken
    return text


def decode(keys: dict, iss: str, aud: str, token: str, now: datetime):
    parts = token.split(".", maxsplit=1)
    if len(parts) != 2:
        raise InvalidToken
    payload_b64, signature_b64 = parts
    try:
        payload = json.loads(b64decode(payload_b64).decode("utf-8"))
    except (TypeError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidToken from exc
    if not isinstance(payload, dict):
        raise InvalidToken
    kid = require_str(payload, "kid")
    key = keys.get(kid)
    if key is None:
        raise InvalidToken
    expected = hmac.new(key.encode("utf-8"), payload_b64.encode("utf-8"), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, b64decode(signature_b64)):
        raise InvalidToken

    if REQUIRED_V2_CLAIMS.difference(payload.keys()):
        raise InvalidToken
    version = require_int(payload, "v")
    key_id = require_str(payload, "kid")
    issued_at = datetime.fromtimestamp(require_int(payload, "iat"), tz=UTC)
    not_before = datetime.fromtimestamp(require_int(payload, "nbf"), tz=UTC)
    token_iss = require_str(payload, "iss")
    token_aud = require_str(payload, "aud")
    expires_at = datetime.fromtimestamp(require_int(payload, "exp"), tz=UTC)
    install_id = require_str(payload, "install_id")
    if version != TOKEN_VERSION or token_iss != iss or token_aud != aud or key_id not in keys:
        raise InvalidToken
    if not_before < issued_at or now < not_before:
        raise InvalidToken
    if expires_at <= now:
        raise ExpiredToken
    return install_id, int(expires_at.timestamp())


def at(seconds) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


# Inputs of the committed vectors: (key, kid, iss, aud, now, ttl, install_id).
VECTOR_INPUTS = [
    ("test-secret", "test-kid", "offload-backend-test", "offload-ios-test", 1771243200, 120, "install-12345"),
    ("kZ3r8vQ1xN5mT7pL2wY9cB4hJ6dF0sGaE7uIoP1", "v2-default", "offload-backend", "offload-ios", 1771243200.75, 3600,
     "6F9619FF-8B86-D011-B42D-00C04FC964FF"),
    ("test-secret", "test-kid", "offload-backend", "offload-ios", 1771243201, 3600, "installé-日本語-😀-𝄞"),
    ("test-secret", "test-kid", "offload-backend", "offload-ios", 1771243202, 3600, "<script>alert(1)&amp;</script>"),
    ("test-secret", "test-kid", "offload-backend", "offload-ios", 1771243203, 3600,
     "q\"b\\s/\n\r\t\b\f\x00\x01\x1f\x7f\u0080\u00ff\u2028\u2029\ufeff\uffff end"),
    ("clé-secrète-ü-0123456789abcdefghij", "kid-ü", "offload-backend-ü", "offload-ios-™", 1800000000, 86400,
     "install-00000001"),
    ("test-secret", "2024-rotation", "offload-backend", "offload-ios", 1771243204, 1, "x" * 128),
    ("test-secret", "k", "i", "a", 1, 1, "abcdefgh"),
]


def vectors():
    out = []
    for key, kid, iss, aud, now, ttl, install_id in VECTOR_INPUTS:
        out.append({
            "key": key, "kid": kid, "iss": iss, "aud": aud, "now": now, "ttl": ttl,
            "install_id": install_id, "token": encode(key, kid, iss, aud, install_id, at(now), ttl),
        })
    json.dump(out, sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")


def verify():
    req = json.load(sys.stdin)
    verdicts = []
    for case in req["cases"]:
        try:
            install_id, exp = decode(req["keys"], req["iss"], req["aud"], case["token"], at(case["now"]))
            verdicts.append({"ok": True, "install_id": install_id, "exp": exp})
        except (InvalidToken, ExpiredToken) as exc:
            verdicts.append({"ok": False, "code": exc.code})
    json.dump(verdicts, sys.stdout)


if __name__ == "__main__":
    {"vectors": vectors, "verify": verify}[sys.argv[1]]()
