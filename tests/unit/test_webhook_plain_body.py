"""The receiver skips the walk over a verified body's values when byte scans of the raw body show
it cannot hold what the walk looks for (services/webhook_signature._plain_body): whenever the
scan says "plain", the walk finds nothing, so skipping it never lets an unstorable body through."""

from __future__ import annotations

import json

import pytest

from services.webhook_signature import MAX_JSON_DEPTH, _parse_json, _plain_body, _unstorable_json

BODIES = [
    b'{"id":"evt_1","object":"event","data":{"object":{"id":"in_1","lines":[1,2,{"a":null}]}}}',
    b'{"id":"evt_1","name":"caf\xc3\xa9 \xf0\x9f\x98\x80"}',  # raw UTF-8, no escapes
    b'{"id":"evt_1","nul":"a\\u0000b"}',  # NUL only through an escape
    b'{"id":"evt_1","s":"\\ud800"}',  # a lone surrogate only through an escape
    b'{"\\u0000":1}',
    b'{"n":123456789012345678901234}',  # past 64 bits: a 19+ digit run
    b'{"n":999999999999999999}',  # 18 digits: in range
    b'{"n":-9223372036854775809}',
    b'{"d":' + b'[' * (MAX_JSON_DEPTH + 1) + b']' * (MAX_JSON_DEPTH + 1) + b'}',
    b'{"d":' + b'[' * (MAX_JSON_DEPTH - 1) + b']' * (MAX_JSON_DEPTH - 1) + b'}',
    b'{"s":"[[[[{{{{"}',
    b'{"s":"\\\\u0000"}',  # an escaped backslash, then text: scanned as an escape (walked)
]


@pytest.mark.parametrize("body", BODIES)
def test_a_plain_body_has_nothing_the_walk_would_refuse(body: bytes) -> None:
    parsed = _parse_json(body)
    if _plain_body(body):
        assert _unstorable_json(parsed) is None


def test_what_the_walk_refuses_is_never_plain() -> None:
    refused = [body for body in BODIES if _unstorable_json(_parse_json(body)) is not None]
    assert len(refused) == 6  # NUL twice, a surrogate, a number out of range twice, too deep
    assert not any(_plain_body(body) for body in refused)


def test_an_ordinary_stripe_event_is_plain() -> None:
    event = {"id": "evt_1", "object": "event", "type": "invoice.paid", "created": 1_780_000_000,
             "data": {"object": {"id": "in_1", "object": "invoice", "amount_paid": 2000,
                                 "lines": {"data": [{"id": "il_1", "metadata": {}}]}}}}
    assert _plain_body(json.dumps(event).encode())
