"""Sentinel URLs: every form parses to the Sentinels, the primary's name and its options;
anything else is InvalidInput naming redis_url; credentials are redacted like any URL's."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stateful_route import InvalidInput
from stateful_route.core.logs import redact
from stateful_route.store.connection import connect, is_sentinel_url, parse_sentinel_url


def test_the_full_form_names_every_sentinel_the_primary_its_db_and_credentials():
    parsed = parse_sentinel_url("redis+sentinel://app:p%40ss@s1:26380,s2,10.0.0.3:5000/mymaster/3")
    assert parsed.sentinels == (("s1", 26380), ("s2", 26379), ("10.0.0.3", 5000))
    assert parsed.service == "mymaster"
    assert parsed.primary == {"username": "app", "password": "p@ss", "db": 3}
    assert parsed.sentinel == {}  # the Sentinels are reached without the primary's credentials


def test_the_short_forms_default_the_db_and_the_port():
    parsed = parse_sentinel_url("redis+sentinel://:secret@[::1]/cache")
    assert parsed.sentinels == (("::1", 26379),)
    assert parsed.primary == {"password": "secret", "db": 0}
    assert parse_sentinel_url("redis+sentinel://h:1/m").primary == {"db": 0}


def test_tls_and_query_options_apply_to_the_sentinels_and_the_primary():
    parsed = parse_sentinel_url("rediss+sentinel://h:1/m?ssl_ca_certs=/ca.pem&socket_timeout=2")
    expected = {"ssl": True, "ssl_ca_certs": "/ca.pem", "socket_timeout": 2.0}
    assert parsed.sentinel == expected
    assert parsed.primary == {**expected, "db": 0}


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://h:1",  # no primary named
        "redis+sentinel://h:1/",
        "redis+sentinel://h:1/m/0/extra",
        "redis+sentinel://h:1/m/zero",
        "redis+sentinel://h:port/m",
        "redis+sentinel://h:1,,h:2/m",
        "redis+sentinel://h:1/m?cluster=true",
        "sentinel://h:1/m",
    ],
)
def test_a_malformed_sentinel_url_is_invalid_input(url):
    with pytest.raises(InvalidInput) as caught:
        connect(url)
    assert caught.value.field == "redis_url"


@given(
    user=st.text("abcxyz", max_size=5),
    password=st.text(string.ascii_letters + string.digits + "-._~!$&'()*+,;=%:", min_size=1, max_size=12),
    hosts=st.lists(st.sampled_from(["s1:26379", "s2:1", "10.0.0.1:5"]), min_size=1, max_size=3),
)
def test_the_password_of_a_sentinel_url_never_survives_redaction(user, password, hosts):
    url = f"rediss+sentinel://{user}:{password}@{','.join(hosts)}/mymaster/0"
    assert is_sentinel_url(url)
    scrubbed = redact(f"event=operator_start redis={url} prefix=sr")
    assert f"rediss+sentinel://***@{','.join(hosts)}/mymaster/0" in scrubbed
    assert ":" + password + "@" not in scrubbed
