"""The sandbox's fast form decoding gives exactly what urllib's parse_qsl gives."""

from __future__ import annotations

import random
from urllib.parse import parse_qsl

from siyu.channels.aliyun_signature import canonical_query
from siyu.sandbox.form import parse_form


def test_parse_form_equals_parse_qsl() -> None:
    rng = random.Random(5)
    alphabet = "aZ09-_.~ *+/&=%!()'回T退订您好，😀\n\\\"[]{}:"
    bodies = [
        "",
        "a",
        "a=",
        "a=1&&b=2",
        "=x&a=1&a=2",
        "bad=%zz%4&c=%E4%BD",  # malformed escapes and a cut UTF-8 sequence
        "plus=a+b%2Bc",
        "raw=回T&esc=%5Cx41",
    ]
    for _ in range(300):
        params = {
            "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 6))): "".join(
                rng.choice(alphabet) for _ in range(rng.randrange(0, 50))
            )
            for _ in range(rng.randrange(1, 5))
        }
        bodies.append(canonical_query(params))  # what the SMS adapter sends
        bodies.append("&".join(f"{k}={v}" for k, v in params.items()))  # unencoded junk
    for body in bodies:
        assert parse_form(body) == dict(parse_qsl(body, keep_blank_values=True)), body
