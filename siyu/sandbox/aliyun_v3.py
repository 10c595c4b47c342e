"""Verifying Aliyun's V3 request signature (ACS3-HMAC-SHA256), the default of the current
Alibaba Cloud SDKs (``alibabacloud-dysmsapi20170525`` 4.x):

    CanonicalRequest = METHOD \\n path \\n sorted encoded query \\n
                       lower(name):trim(value)\\n per signed header \\n signed;headers \\n
                       hex(sha256(body))
    StringToSign     = "ACS3-HMAC-SHA256\\n" + hex(sha256(CanonicalRequest))
    Authorization    = "ACS3-HMAC-SHA256 Credential=<AccessKeyId>,SignedHeaders=<a;b>,
                        Signature=<hex(HMAC-SHA256(secret, StringToSign))>"

(Aliyun "V3 request structure and signature" documentation.)
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass

from siyu.channels.aliyun_signature import percent_encode

ALGORITHM = "ACS3-HMAC-SHA256"
_AUTH = re.compile(
    r"^ACS3-HMAC-SHA256\s+Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]+)$"
)
# Headers that must be signed when present (every x-acs-* and host; content-type if sent).
_MUST_SIGN = ("host", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce")


@dataclass(frozen=True)
class V3Authorization:
    access_key_id: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(value: str) -> V3Authorization | None:
    """The parts of an ACS3-HMAC-SHA256 Authorization header; None if it is not one."""
    match = _AUTH.match(value.strip())
    if match is None:
        return None
    names = tuple(match.group(2).split(";"))
    return V3Authorization(match.group(1), names, match.group(3))


def missing_signed_headers(auth: V3Authorization, headers: Mapping[str, str]) -> list[str]:
    """Headers the request carries but did not sign (which would let them be altered)."""
    present = {k.lower() for k in headers}
    required = [h for h in _MUST_SIGN if h in present]
    required += [h for h in sorted(present) if h.startswith("x-acs-") and h not in required]
    return [h for h in required if h not in auth.signed_headers]


def canonical_request(
    method: str,
    path: str,
    query: list[tuple[str, str]],
    headers: Mapping[str, str],
    signed_headers: tuple[str, ...],
    payload_hash: str,
) -> str:
    canonical_query = "&".join(
        f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(query, key=lambda kv: kv[0])
    )
    lowered = {k.lower(): v for k, v in headers.items()}
    canonical_headers = "".join(f"{h}:{lowered.get(h, '').strip()}\n" for h in signed_headers)
    return "\n".join(
        [
            method.upper(),
            path or "/",
            canonical_query,
            canonical_headers,
            ";".join(signed_headers),
            payload_hash,
        ]
    )


def signature(secret: str, canonical: str) -> str:
    to_sign = f"{ALGORITHM}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    return hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()


def verify(
    secret: str,
    auth: V3Authorization,
    method: str,
    path: str,
    query: list[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
) -> bool:
    payload_hash = hashlib.sha256(body).hexdigest()
    declared = {k.lower(): v for k, v in headers.items()}.get("x-acs-content-sha256")
    if declared is not None and declared != payload_hash:
        return False
    canonical = canonical_request(method, path, query, headers, auth.signed_headers, payload_hash)
    return hmac.compare_digest(signature(secret, canonical), auth.signature)
