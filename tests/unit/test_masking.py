"""The log masking layer: registered values and each known credential pattern become `***`."""

from __future__ import annotations

import io
import json
import logging
import secrets

import pytest

from stella.adapters import masking
from stella.adapters.masking import forget_secrets, mask, register_secret
from stella.logging_setup import JsonFormatter


@pytest.fixture(autouse=True)
def _clean_registry():
    forget_secrets()
    yield
    forget_secrets()


def test_a_registered_value_is_masked_also_in_its_quoted_forms():
    value = 'v@l"ue\\with-quotes'
    register_secret(value)
    assert mask(f"got {value} here") == "got *** here"
    assert value not in mask(json.dumps({"x": value}))
    assert value not in mask(repr(value))


def test_short_values_are_not_registered():
    register_secret("ab")
    assert mask("a crab walks") == "a crab walks"


def test_the_registry_is_bounded(monkeypatch):
    monkeypatch.setattr(masking, "MAX_SECRETS", 3)
    for n in range(10):
        register_secret(f"value-number-{n}")
    assert mask("value-number-9") == "***"
    assert mask("value-number-0") == "value-number-0"  # the oldest dropped out


@pytest.mark.parametrize(
    ("text", "secret", "expected"),
    [
        (f"token stl_{'A' * 43}", "A" * 43, "token stl_***"),
        ("join with stj_" + "b-c_" * 10, "b-c_" * 10, "join with stj_***"),
        ("Authorization: Bearer abc.def-ghi", "abc.def-ghi", "Authorization: Bearer ***"),
        ("authorization: basic dXNlcjpwdw==", "dXNlcjpwdw==", "authorization: basic ***"),
        ("connect password=hunter2x now", "hunter2x", "connect password=*** now"),
        ('{"password": "hunter 2x"}', "hunter 2x", '{"password": "***"}'),
        ("{'passwd': 'p4ss'}", "p4ss", "{'passwd': '***'}"),
        ('{"task_token": "Zx9_-abc"}', "Zx9_-abc", '{"task_token": "***"}'),
        ("X-Stella-Task-Token: Zx9_-abc", "Zx9_-abc", "X-Stella-Task-Token: ***"),
        (
            "postgresql://stella:s3cr3t@db:5432/stella",
            "s3cr3t",
            "postgresql://stella:***@db:5432/stella",
        ),
        ("https://:onlypw@host/x", "onlypw", "https://:***@host/x"),
    ],
)
def test_known_credential_patterns(text, secret, expected):
    assert mask(text) == expected
    assert secret not in mask(text)


def test_task_tokens_as_generated_are_masked_under_their_names():
    token = secrets.token_urlsafe(32)  # as the agent listener makes them: no prefix
    assert token not in mask(json.dumps({"job_id": "j", "task_token": token}))
    assert token not in mask(f"X-Stella-Task-Token: {token}")


def test_pem_private_key_blocks_whole_escaped_or_cut_off():
    body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7"
    pem = f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n"
    assert mask(f"key: {pem}tail") == "key: ***\ntail"
    assert "MIIEvQ" not in mask(json.dumps(pem))
    assert "MIIEvQ" not in mask("-----BEGIN OPENSSH PRIVATE KEY-----\n" + body)
    assert mask("-----BEGIN CERTIFICATE-----") == "-----BEGIN CERTIFICATE-----"


def test_harmless_text_is_left_alone():
    text = "promotion 1.0.0 to dev approved; secret reference env:STELLA_SECRET_X; token=???"
    assert mask("promotion 1.0.0 to dev approved") == "promotion 1.0.0 to dev approved"
    assert "env:STELLA_SECRET_X" in mask(text)


def _line(record: logging.LogRecord) -> dict:
    return json.loads(JsonFormatter().format(record))


def test_every_log_record_is_masked_message_exception_and_extras():
    value = "the-resolved-value-42"
    register_secret(value)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.masking")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        logger.info("resolved %s", value, extra={"path": f"/x/{value}", "status": 200})
        try:
            raise RuntimeError(f"failed with {value} and postgresql://u:pw123@h/db")
        except RuntimeError:
            logger.exception("boom", extra={"promotion_id": f"password={value}"})
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    assert value not in output
    assert "pw123" not in output
    first, second = (json.loads(line) for line in output.splitlines())
    assert first["message"] == "resolved ***"
    assert (first["path"], first["status"], first["logger"]) == ("/x/***", 200, "test.masking")
    assert second["error"] == "RuntimeError: failed with *** and postgresql://u:***@h/db"
    assert second["promotion_id"] == "password=***"
    assert set(first) >= {"time", "level", "logger", "message"}


def test_pretty_output_is_masked_too():
    value = "another-resolved-value"
    register_secret(value)
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "saw %s", (value,), None)
    text = JsonFormatter(pretty=True).format(record)
    assert value not in text
    assert "saw ***" in text
