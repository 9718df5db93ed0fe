"""The log masking layer: registered values and each known credential pattern become `***`."""

from __future__ import annotations

import io
import json
import logging
import random
import re
import secrets

import pytest

from stella.adapters import masking
from stella.adapters.executors.journal import Journal
from stella.adapters.executors.secret_env import resolve_environment
from stella.adapters.masking import forget_secrets, mask, mask_value, register_secret
from stella.adapters.secrets import resolve_secret
from stella.logging_setup import JsonFormatter


@pytest.fixture(autouse=True, params=["substring tests", "compiled search"])
def _clean_registry(request, monkeypatch):
    """Every test twice: registered forms found one by one, and with the compiled search (which
    the registry uses from SEARCH_FROM forms on)."""
    if request.param == "compiled search":
        monkeypatch.setattr(masking, "SEARCH_FROM", 1)
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


# --- every form of a value and every pattern, through `mask` and through the log pipeline ---

AWKWARD = 'p\\a"ss\tw\x07ord-ünï-\U0001f512'  # backslash, quote, tab, bell, non-ASCII, astral
MULTILINE = "first-line-of-it\nsecond line here\n  third-indented  \nab"


def _independent_forms(value: str) -> dict[str, str]:
    """The quoted forms, computed here (not with the code under test)."""
    go = "".join(
        {'"': '\\"', "\\": "\\\\", "\t": "\\t", "\a": "\\a"}.get(c, c)
        if c.isprintable() or c in '\t\a"\\'
        else f"\\x{ord(c):02x}"
        for c in value
    )
    return {
        "raw": value,
        "json": json.dumps(value)[1:-1],
        "json-utf8": json.dumps(value, ensure_ascii=False)[1:-1],
        "python": repr(value)[1:-1],
        "go %q": go,
        "go %q printable": value.replace("\\", "\\\\").replace('"', '\\"'),
    }


def _format(message: str, **extra: object) -> str:
    record = logging.LogRecord("test.forms", logging.INFO, __file__, 1, message, (), None)
    record.__dict__.update(extra)
    return JsonFormatter().format(record)


@pytest.mark.parametrize("form", sorted(_independent_forms(AWKWARD)))
def test_each_quoted_form_of_a_value_is_masked_in_text_and_log_lines(form):
    register_secret(AWKWARD)
    text = _independent_forms(AWKWARD)[form]
    assert mask(f"<{text}>") == "<***>"
    line = json.loads(_format(f"saw <{text}>", path=f"/p/{text}"))
    assert (line["message"], line["path"]) == ("saw <***>", "/p/***")


def test_each_line_of_a_multi_line_value_is_masked_on_its_own_and_short_lines_are_not():
    register_secret(MULTILINE)
    for line in ("first-line-of-it", "second line here", "third-indented"):
        assert mask(f"out: {line} end") == "out: *** end"
        assert line not in _format(f"out: {line} end")
    assert mask("out: ab end") == "out: ab end"  # too short to be masked alone
    assert mask(json.dumps(MULTILINE)) == '"***"'
    assert mask("  " + MULTILINE + "  ") == "  ***  "


def test_a_stripped_value_is_masked():
    register_secret("  padded-secret-value \n")
    assert mask("x=padded-secret-value;") == "x=***;"
    assert "padded-secret-value" not in _format("x=padded-secret-value;")


def test_overlapping_values_are_masked_as_one_with_nothing_left_over():
    register_secret("xyzab-secret-one")
    register_secret("secret-one-tail-2")
    assert mask("[xyzab-secret-one-tail-2]") == "[***]"
    assert mask("[xyzab-secret-oneXsecret-one-tail-2]") == "[***X***]"
    assert mask("secret-one-tail-2secret-one-tail-2") == "******"  # adjacent: one mask each
    register_secret("xyz-xyz-")
    assert mask("xyz-xyz-xyz-!") == "***!"  # a value overlapping itself


def test_values_sharing_a_long_prefix_are_each_masked_and_the_prefix_alone_is_not():
    shared = "0123456789abcdefghij"  # longer than the compiled search looks at
    register_secret(shared + "-first")
    register_secret(shared + "-second-longer")
    register_secret(shared[:6])
    assert mask(f"a {shared}-first b") == "a *** b"
    assert mask(f"a {shared}-second-longer b") == "a *** b"
    assert mask(f"a {shared}-third b") == "a ***6789abcdefghij-third b"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"token stl_{'A' * 43}", "token stl_***"),
        ("join with stj_" + "b-c_" * 10, "join with stj_***"),
        ("Authorization: Bearer abc.def-ghi", "Authorization: Bearer ***"),
        ("BEARER abc.def-ghi", "BEARER ***"),
        ("authorization: Basic dXNlcjpwdw==", "authorization: Basic ***"),
        ("connect PassWord=hunter2x now", "connect PassWord=*** now"),
        ('{"client_secret": "a b c"}', '{"client_secret": "***"}'),
        ("secret_key: abcdefgh", "secret_key: ***"),
        ("refresh_token=abcdefgh&x=1", "refresh_token=***&x=1"),
        ("access_token: 'abc'", "access_token: '***'"),
        ("api_token=abcdefgh", "api_token=***"),
        ("join_token=abcdefgh", "join_token=***"),
        ("x-stella-task-token: abcdefgh", "x-stella-task-token: ***"),
        ("redis://:pw-123@cache:6379/0", "redis://:***@cache:6379/0"),
        ("-----BEGIN EC PRIVATE KEY-----\\nMHcCAQEE\\n", "***"),
        # Unicode case folding: the patterns ignore case as `re` does, also for non-ASCII text
        ("Authorization: ba\u017fic dXNlcjpwdw==", "Authorization: ba\u017fic ***"),
        ("task_to\u212aen=abcdefgh", "task_to\u212aen=***"),
        ("clİent_secret: zzzzzz", "clİent_secret: ***"),
    ],
)
def test_every_pattern_is_masked_in_text_and_in_every_field_of_a_log_line(text, expected):
    assert mask(text) == expected
    line = json.loads(_format(text, outcome=text, path=[text]))
    assert (line["message"], line["outcome"], line["path"]) == (expected, expected, [expected])


def test_nested_fields_are_masked():
    register_secret("nested-secret-value")
    line = json.loads(_format("ok", outcome={"deep": ["nested-secret-value", "stl_" + "x" * 20]}))
    assert line["outcome"] == {"deep": ["***", "stl_***"]}


def test_needs_masking_is_false_only_when_masking_changes_nothing():
    """The log pipeline skips lines on this test's word: fuzz it against `mask`."""
    register_secret("s3cret-Value-1")
    register_secret("x" * 40 + "tail")
    pieces = [
        "s3cret-Value-1", "s3cret-Value-", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxtail", "x" * 41,
        "stl_", "stl_abcdefgh", "stj_abcdefghij", "Bearer", "bearer tok", "basic",
        "\u017f", "\u212a", "password", "pass", "=", ":", " ", "'", '"', "token", "_token=v",
        "secret", "://", "@",
        "u:p@h", "https://a:b@c", "-----BEGIN RSA PRIVATE KEY-----", "PRIVATE KEY-----", "é",
        "plain words", "2025-01-01T00:00:00+00:00", "\n",
    ]  # fmt: skip
    rng = random.Random(7)  # noqa: S311 - a fixed seed, not a secret
    skipped = 0
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 6)))
        if not masking.needs_masking(text):
            skipped += 1
            assert mask(text) == text, text
    assert skipped > 300  # the test exercised the skipping


def test_the_compiled_search_is_built_once_per_change_of_the_registered_set(monkeypatch):
    register_secret("first-secret-value")
    mask("warm up")
    built = masking._registry._current()
    register_secret("first-secret-value")  # again: the set is the same
    assert masking._registry._current() is built
    compiles: list[str] = []
    real_compile = re.compile
    monkeypatch.setattr(
        re, "compile", lambda *a, **k: compiles.append(a[0]) or real_compile(*a, **k)
    )
    for n in range(200):
        mask(f"line {n} with first-secret-value and password=x{n}")
        _format(f"line {n}", path=f"/x/{n}")
    assert compiles == []
    monkeypatch.undo()
    register_secret("second-secret-value")
    assert masking._registry._current() is not built
    assert mask("first-secret-value second-secret-value") == "*** ***"


def test_a_registered_value_stops_being_masked_only_when_it_drops_out(monkeypatch):
    monkeypatch.setattr(masking, "MAX_SECRETS", 4)
    register_secret("value-aaaa")
    register_secret("value-bbbb")
    register_secret("value-aaaa")  # registered again: the most recent now
    register_secret("value-cccc")
    register_secret("value-dddd")
    register_secret("value-eeee")
    assert mask("value-aaaa value-bbbb value-eeee") == "*** value-bbbb ***"


# --- the executors' journal: the same forms, also for one-letter values; one registration ---


def test_the_journal_masks_every_form_of_a_job_secret_and_short_ones():
    lines: list[str] = []
    journal = Journal(lines.append)
    journal.secret(AWKWARD)
    journal.secret("q")
    for form, text in _independent_forms(AWKWARD).items():
        journal(f"docker: invalid env {text} ({form})")
    assert all(line.startswith("docker: invalid env *** (") for line in lines), lines
    assert journal.mask("quiet") == "***uiet"
    assert mask("quiet") == "quiet"  # the journal's secrets are its own


def test_a_resolved_environment_value_is_registered_once_and_masked_everywhere(monkeypatch):
    value = "env-secret-" + secrets.token_hex(8)
    monkeypatch.setenv("STELLA_SECRET_TEST_VALUE", value)
    added: list[str] = []
    real_add = masking._registry.add
    monkeypatch.setattr(
        masking._registry, "add", lambda v, **k: added.append(v) or real_add(v, **k)
    )
    lines: list[str] = []
    journal = Journal(lines.append)
    env = resolve_environment(
        {"DB_PASSWORD": "env:STELLA_SECRET_TEST_VALUE", "MODE": "x"}, resolve_secret, journal, "app"
    )
    assert env == {"DB_PASSWORD": value, "MODE": "x"}
    assert added == [value]
    journal(f"container said {value!r} and {json.dumps(value)}")
    assert value not in "\n".join(lines)
    assert value not in _format(f"resolved {value}")


def test_an_object_in_a_log_field_is_written_as_its_masked_text():
    class Credentials:
        def __repr__(self) -> str:
            return "Credentials(password='hunter2-secret-value')"

        __str__ = __repr__

    register_secret("hunter2-secret-value")
    try:
        masked = mask_value({"creds": Credentials(), "n": 3, "ok": True, "none": None})
    finally:
        forget_secrets()
    assert masked == {"creds": "Credentials(password='***')", "n": 3, "ok": True, "none": None}


def test_every_credential_key_contains_a_word_the_fast_path_looks_for():
    """The fast path skips the key patterns when none of _KEY_WORDS is in the text: a key added
    to _KEYS without such a word would silently stop being masked."""
    for key in masking._KEYS.split("|"):
        assert any(word in key for word in masking._KEY_WORDS), key


def test_a_script_step_masks_its_secrets_in_every_printed_form():
    """The script step's log masking is the shared one: a value printed JSON-escaped (as a
    tool dumping its config would) is masked too, not only the raw value."""
    from stella.adapters.steps.script import mask as mask_step
    from stella.services.steps import StepResult

    secret = 'pa"ss\\word-42'
    printed = json.dumps({"password_field": secret})
    result = mask_step(
        StepResult("failed", {"out": f"raw {secret}"}, f"error {printed}", f"log {printed}"),
        [secret],
    )
    for text in (result.log, result.error, result.outputs["out"]):
        assert "ss" not in text.replace("password_field", ""), text
        assert "***" in text
