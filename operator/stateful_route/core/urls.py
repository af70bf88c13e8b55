"""Redis URLs made safe to print: the credentials are found by the URL's structure, not a pattern.

``scheme://[userinfo@]hosts[/path][?query]``: the userinfo is taken as everything between ``://``
and the *last* ``@``, so a password holding ``@``, ``:``, ``/`` or ``?`` (unencoded, as people
paste them) is hidden whole; a query value holding ``@`` is hidden with it (safe rather than
exact). A password given as a query option (``?password=…``, ``sentinel_password``,
``ssl_password``: any option whose name holds "password") is hidden too. This covers every scheme
the project accepts (``redis``, ``rediss``, ``redis+sentinel``, ``rediss+sentinel``, with or
without ``?cluster=true``); a new scheme needs nothing here. Text that is not a URL is never echoed.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

__all__ = ["MASK", "UNPRINTABLE", "redact_text", "redact_url"]

MASK = "***"
UNPRINTABLE = "<a Redis URL that cannot be shown>"

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# A URL inside free text runs to the next whitespace; its userinfo ends at its last '@'.
_IN_TEXT = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<rest>\S*)")


def redact_url(url: str) -> str:
    """``url`` with its user and password replaced by ``***``; a placeholder if it has no scheme
    (then nothing in it can be told apart from a password)."""
    head = _SCHEME.match(url)
    if head is None:
        return UNPRINTABLE
    return head.group(0) + _hide_userinfo(url[head.end() :])


def redact_text(text: str) -> str:
    """``text`` with the user and password of every URL in it replaced by ``***``."""
    return _IN_TEXT.sub(lambda m: m.group("scheme") + _hide_userinfo(m.group("rest")), text)


# A query option and its value: from '?' or '&' to the next '&', '#' or whitespace.
_QUERY_OPTION = re.compile(r"(?P<lead>[?&])(?P<name>[^=&#\s]*)=(?P<value>[^&#\s]*)")


def _hide_password_option(option: re.Match[str]) -> str:
    # redis-py decodes option names, so ``pass%77ord`` is ``password`` too.
    if "password" not in unquote(option.group("name")).lower():
        return option.group(0)
    return f"{option.group('lead')}{option.group('name')}={MASK}"


def _hide_userinfo(rest: str) -> str:
    at = rest.rfind("@")
    hidden = rest if at < 0 else f"{MASK}@{rest[at + 1 :]}"
    return _QUERY_OPTION.sub(_hide_password_option, hidden)
