"""Passwords in Redis URLs never reach output: redaction by the URL's structure, for passwords
holding any of ``@ : / ? #`` unencoded, in every URL form; unparsable URLs are not echoed."""

from __future__ import annotations

import logging
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stateful_route.controller.config import OperatorConfig
from stateful_route.core.errors import InvalidInput
from stateful_route.core.logs import JsonFormatter, KeyValueFormatter
from stateful_route.core.urls import redact_text, redact_url
from stateful_route.store.connection import check_url, connect, parse_sentinel_url
from stateful_route.testing.local_redis import NamedRedisDown, free_port, redis_url

# Distinctive pieces, so finding one in the output means the password leaked.
PIECES = st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ", min_size=4, max_size=8)
SEPARATORS = st.sampled_from(["@", ":", "/", "?", "#", "%", "=", "&", ""])
PASSWORDS = st.lists(st.tuples(PIECES, SEPARATORS), min_size=1, max_size=4).map(
    lambda parts: "".join(piece + sep for piece, sep in parts)
)
FORMS = [
    "redis://{auth}127.0.0.1:6379/0",
    "rediss://{auth}redis.example:6380/0?ssl_ca_certs=/etc/ca.pem",
    "redis://{auth}10.0.0.5:7000/0?cluster=true",
    "redis+sentinel://{auth}s1:26379,s2:26379/mymaster/0",
    "rediss+sentinel://{auth}s1/mymaster",
]


def pieces_of(password: str) -> list[str]:
    return [p for p in "".join(c if c.isalpha() else " " for c in password).split() if len(p) >= 4]


def leaked(password: str, text: str) -> list[str]:
    return [piece for piece in pieces_of(password) if piece in text]


@given(password=PASSWORDS, user=st.sampled_from(["", "alice"]), form=st.sampled_from(FORMS))
def test_no_piece_of_a_password_survives_redaction(password: str, user: str, form: str):
    for written in (password, quote(password, safe="")):  # pasted raw, or percent-encoded
        url = form.format(auth=f"{user}:{written}@")
        assert leaked(password, redact_url(url)) == []
        assert leaked(password, redact_text(f"event=start redis={url} prefix=sr")) == []
        assert leaked(password, repr(OperatorConfig(redis_url=url))) == []
        record = logging.LogRecord("t", logging.INFO, __file__, 1, "redis=%s", (url,), None)
        for formatter in (KeyValueFormatter(), JsonFormatter()):
            assert leaked(password, formatter.format(record)) == []
        problem = _problem(url)  # a password that breaks the URL: said, never echoed
        if problem is not None:
            assert leaked(password, str(problem)) == []
            assert problem.__cause__ is None
            assert problem.__context__ is None or problem.__suppress_context__


QUERY_FORMS = [
    "redis://127.0.0.1:6379/0?{option}={secret}",
    "rediss://h:6380/0?ssl_ca_certs=/etc/ca.pem&{option}={secret}&db=0",
    "redis+sentinel://s1,s2/mymaster/0?{option}={secret}#frag",
]


@given(
    password=PASSWORDS,
    # redis-py decodes option names: ``pass%77ord`` sets the password too.
    option=st.sampled_from(
        ["password", "sentinel_password", "ssl_password", "Password", "pass%77ord", "%70assword"]
    ),
    form=st.sampled_from(QUERY_FORMS),
)
def test_a_password_given_as_a_query_option_is_hidden_too(password: str, option: str, form: str):
    """redis-py takes ``?password=`` as the password: it is as secret as the userinfo's."""
    url = form.format(option=option, secret=quote(password, safe=""))
    assert leaked(password, redact_url(url)) == []
    assert leaked(password, redact_text(f"error: {url}: redis unavailable")) == []
    assert leaked(password, repr(OperatorConfig(redis_url=url))) == []
    assert redact_url(url).startswith(url.partition("?")[0])  # the rest is still shown


# A password that begins with digits, then a character that ends a URL's authority.
EARLY_END = st.tuples(st.text("0123456789", min_size=1, max_size=5), st.sampled_from("/?#"), PASSWORDS).map(
    "".join
)


@given(password=EARLY_END, user=st.sampled_from(["", "alice"]), form=st.sampled_from(FORMS))
def test_a_password_that_ends_the_host_early_is_refused_not_connected_to(password: str, user: str, form: str):
    """``alice:2024/x@host``: the unencoded '/' ends the authority, which would read as host
    "alice", port 2024, and a connection error would print both. Refused, never echoed."""
    problem = _problem(form.format(auth=f"{user}:{password}@"))
    assert problem is not None
    assert password[:4] not in str(problem)


def _problem(url: str) -> InvalidInput | None:
    try:
        check_url(url)
    except InvalidInput as exc:
        return exc
    return None


@given(password=PASSWORDS)
def test_sentinel_options_never_print_the_password(password: str):
    url = f"redis+sentinel://:{quote(password, safe='')}@s1:26379/mymaster/0"
    assert leaked(password, repr(parse_sentinel_url(url))) == []


def test_the_rest_of_the_url_stays_readable():
    url = "rediss://alice:p@ss:w/rd@redis.example:6380/0?ssl_ca_certs=/etc/ca.pem"
    assert redact_url(url) == "rediss://***@redis.example:6380/0?ssl_ca_certs=/etc/ca.pem"
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert "secret" not in redact_url("secret:pw@host:6379")  # no scheme: nothing is shown


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis://:Sekr/Etpw@127.0.0.1:6379/0", "after its host"),
        ("redis://Sekr:2024/Etpw@127.0.0.1:6399/0", "after its host"),  # read as host Sekr, port 2024
        ("redis://127.0.0.1:abc/0", "port"),
        ("redis://127.0.0.1:99999/0", "port"),
        ("redis://127.0.0.1:6379/0?socket_timeout=abc", "socket_timeout"),
        ("redis+sentinel://:Sekr/Etpw@s1:26379/mymaster", "after its host"),
        ("redis://[::1/0", "cannot be parsed"),
        ("redis://127.0.0.1:6379/0/1", "database"),  # redis-py would use db 1
        ("redis://127.0.0.1:6379/x", "database"),  # and db 0 here
        ("redis://127.0.0.1:6379/-1", "database"),
        ("http://127.0.0.1/0", "must start with"),
    ],
)
def test_a_malformed_url_is_bad_input_naming_the_problem_not_the_url(url: str, says: str):
    with pytest.raises(InvalidInput) as raised:
        connect(url)
    assert raised.value.field == "redis_url"
    assert says in str(raised.value)
    assert "Sekr" not in str(raised.value)
    assert "Etpw" not in str(raised.value)


def test_a_named_dead_redis_message_redacts_the_password():
    dead = f"redis://:Sekr@Etpw@127.0.0.1:{free_port()}/0"
    with pytest.raises(NamedRedisDown) as raised, redis_url(dead):
        pass
    assert "Sekr" not in str(raised.value)
    assert "Etpw" not in str(raised.value)
    assert "127.0.0.1" in str(raised.value)
