"""Aliyun RPC v1 request signing (HMAC-SHA1), shared by the SMS adapter and the sandbox.

StringToSign = METHOD & %2F & percentEncode(sorted, percent-encoded query);
Signature = base64(HMAC-SHA1(AccessKeySecret + "&", StringToSign)).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import uuid
from collections.abc import Mapping
from urllib.parse import quote


def percent_encode(value: str) -> str:
    # RFC 3986 unreserved characters stay; everything else (incl. space, *, ~ handling) encoded.
    return quote(value, safe="-_.~")


def string_to_sign(method: str, params: Mapping[str, str]) -> str:
    canonical = "&".join(
        f"{percent_encode(k)}={percent_encode(params[k])}"
        for k in sorted(params)
        if k != "Signature"
    )
    return f"{method.upper()}&%2F&{percent_encode(canonical)}"


def sign(method: str, params: Mapping[str, str], access_key_secret: str) -> str:
    digest = hmac.new(
        (access_key_secret + "&").encode(), string_to_sign(method, params).encode(), hashlib.sha1
    ).digest()
    return base64.b64encode(digest).decode()


def signed_params(
    method: str,
    action: str,
    params: Mapping[str, str],
    *,
    access_key_id: str,
    access_key_secret: str,
    region_id: str = "cn-hangzhou",
    now: dt.datetime | None = None,
) -> dict[str, str]:
    """The full query for one call: common parameters, a fresh nonce, and the signature."""
    now = now or dt.datetime.now(dt.UTC)
    full = {
        "Format": "JSON",
        "Version": "2017-05-25",
        "Action": action,
        "AccessKeyId": access_key_id,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "SignatureNonce": uuid.uuid4().hex,
        "Timestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "RegionId": region_id,
        **params,
    }
    full["Signature"] = sign(method, full, access_key_secret)
    return full


def verify(method: str, params: Mapping[str, str], access_key_secret: str) -> bool:
    expected = sign(method, params, access_key_secret)
    return hmac.compare_digest(expected, params.get("Signature", ""))
