"""Secrets out of every URL riskmodel prints, tags or logs.

A tracking URI or an Optuna storage URL may carry a password, in its userinfo
(``postgresql://ann:pw@db/x``) or in its query (``?password=pw``, ``?token=pw``). Every such URL
passes :func:`redact_url` before it reaches a terminal, a log, an MLflow tag or a summary file;
an error message that may quote one passes :func:`redact_text`.

Passwords are often not percent-encoded, so a raw ``/``, ``@``, ``:``, ``?`` or ``#`` may sit in
the userinfo. :func:`urllib.parse.urlsplit` then ends the authority at the first ``/`` or ``?``
and shows the rest of the password as the path. Here the userinfo runs to the *last* ``@`` that is
followed by something shaped like a host; when a URL is ambiguous, more is hidden, never less.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import quote, unquote

__all__ = ["MASK", "RedactingFilter", "redact_logs", "redact_text", "redact_url"]

MASK = "***"

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
# what may follow the userinfo's "@": a host (name, IPv4, [IPv6], maybe empty) and a port
_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]*\]|[A-Za-z0-9._~%\-]*)(?::[0-9]*)?(?=[/?#]|$)")
_LOGIN = re.compile(r"[A-Za-z0-9._\-]{1,32}")  # a user name worth keeping; a longer one may be a token
_SECRET_KEY = re.compile(r"pass|pwd|secret|token|key|auth|credential|signature|^sig$|session|cookie", re.IGNORECASE)
# a query parameter starts after "?", "&" or ";" with "name="; a raw "&" inside a value stays in it
_PARAMETER = re.compile(r"(?:^\?|(?<=[&;]))([^=&;?#]*)=")
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"]+")
_AROUND_MASK = re.compile(r"[^\s'\"()\[\]{},;]*\*\*\*[^\s'\"()\[\]{},;]*")


def _userinfo_end(rest: str) -> int | None:
    """Where the userinfo of ``rest`` (the URL after ``scheme://``) ends: its last ``@`` before a host.

    A path holding "@" (``host/a@b``) is then read as userinfo too, and hidden: a token may hold a
    raw "/", and the two cannot be told apart.
    """
    ends = [m.start() for m in re.finditer("@", rest) if _HOST.match(rest, m.start() + 1)]
    return ends[-1] if ends else None


def _shown_userinfo(userinfo: str) -> str:
    user, colon, _ = userinfo.partition(":")
    if _LOGIN.fullmatch(user):
        return f"{user}:{MASK}" if colon else user
    return MASK


def _parameters(query: str) -> list[tuple[int, int, str]]:
    """(start of value, end of value, name) of each ``name=value`` in ``query`` (which starts at "?")."""
    found = [(m.end(), m.start(), m.group(1)) for m in _PARAMETER.finditer(query)]
    spans = []
    for i, (value_start, _, name) in enumerate(found):
        value_end = found[i + 1][1] - 1 if i + 1 < len(found) else len(query)
        spans.append((value_start, value_end, name))
    return spans


def _split(url: str) -> tuple[str, str, str, str] | None:
    """(``scheme://``, userinfo, the rest up to "?", the query from "?") of a URL; None for a path."""
    scheme = _SCHEME.match(url)
    if scheme is None:
        return None
    rest = url[scheme.end() :]
    end = _userinfo_end(rest)
    userinfo, rest = ("", rest) if end is None else (rest[:end], rest[end + 1 :])
    where, mark, query = rest.partition("?")
    return scheme.group(), userinfo, where, mark + query


def redact_url(url: str) -> str:
    """``url`` with its password, and every password-like query value, replaced by ``***``.

    The user name is kept when it looks like a login name; a user name alone that could be a
    token is hidden too. Anything that is not a ``scheme://`` URL (a local path) is returned as is.

    >>> redact_url("postgresql://ann:secret@db.example:5432/optuna")
    'postgresql://ann:***@db.example:5432/optuna'
    >>> redact_url("postgresql://ann:p/w@x:y%2Fz@db:5432/optuna?sslmode=require")
    'postgresql://ann:***@db:5432/optuna?sslmode=require'
    >>> redact_url("mysql://bob:a?b#c@[::1]/db")
    'mysql://bob:***@[::1]/db'
    >>> redact_url("sqlite:////data/optuna.db?password=s/e@c:r%2Fet&timeout=30")
    'sqlite:////data/optuna.db?password=***&timeout=30'
    >>> redact_url("https://ghp_0123456789abcdef0123456789abcdef0123@github.example/x?access_token=t&mode=ro")
    'https://***@github.example/x?access_token=***&mode=ro'
    >>> redact_url("http://tracking-host:5000")
    'http://tracking-host:5000'
    >>> redact_url("sqlite:///mlruns/mlflow.db")
    'sqlite:///mlruns/mlflow.db'
    """
    parts = _split(url)
    if parts is None:
        return url
    scheme, userinfo, where, query = parts
    shown = scheme + (_shown_userinfo(userinfo) + "@" if userinfo else "") + where
    out, last = [], 0
    for start, end, name in _parameters(query):
        if _SECRET_KEY.search(unquote(name)):
            out += [query[last:start], MASK]
            last = end
    return shown + "".join(out) + query[last:]


def _secrets(url: str) -> list[str]:
    """The secret pieces of ``url`` as they may appear in a message: raw, decoded and encoded."""
    parts = _split(url)
    if parts is None:
        return []
    _, userinfo, _, query = parts
    found = []
    if userinfo:
        user, colon, password = userinfo.partition(":")
        found += [password] if colon else []
        found += [] if _LOGIN.fullmatch(user) else [user]
    found += [query[s:e] for s, e, name in _parameters(query) if _SECRET_KEY.search(unquote(name))]
    pieces = set()
    for secret in filter(None, found):
        for form in (secret, unquote(secret), quote(unquote(secret), safe="")):
            pieces.add(form)
            # a client that mis-split the URL may quote a fragment of the password
            pieces.update(p for p in re.split(r"[/@:?#%&=;]", form) if len(p) >= 2)
    return sorted(pieces, key=len, reverse=True)


def redact_text(text: str, *urls: str | None) -> str:
    """``text`` (say an exception's message) without the secrets of ``urls`` and of any URL in it.

    A client that mis-split a URL may quote a piece of its password beside other text; outside URLs,
    the whole word around a hidden piece is hidden.

    >>> redact_text("invalid port 'w%2Fd@db:5' in postgresql://u:pa/ss:w%2Fd@db:5/x", "postgresql://u:pa/ss:w%2Fd@db:5/x")
    "invalid port '***' in postgresql://u:***@db:5/x"
    """
    secrets = [s for url in urls for s in _secrets(url or "")]
    out, last = [], 0
    for match in [*_URL_IN_TEXT.finditer(text), None]:
        plain = text[last : match.start() if match else len(text)]
        for secret in secrets:
            if len(secret) > 2:
                plain = plain.replace(secret, MASK)
            else:  # a short piece only where it stands alone ('s3' quoted as a host), not inside words
                plain = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", MASK, plain)
        out.append(_AROUND_MASK.sub(MASK, plain))
        if match is None:
            break
        url = match.group()
        for secret in secrets:  # before parsing: a secret may hold what ends a URL's userinfo
            url = url.replace(secret, MASK) if len(secret) > 2 else url
        out.append(redact_url(url))
        last = match.end()
    return "".join(out)


class RedactingFilter(logging.Filter):
    """A logging filter that takes the secrets of ``urls``, and of any URL, out of each record.

    Attached to a handler, it covers every record that handler writes, whichever library logged it.
    """

    def __init__(self, *urls: str | None) -> None:
        super().__init__()
        self.urls = [u for u in urls if u]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact_text(message, *self.urls)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            import traceback

            record.exc_text = redact_text("".join(traceback.format_exception(*record.exc_info)), *self.urls)
            record.exc_info = None
        return True


LOGGERS = ("", "mlflow", "alembic", "optuna", "sqlalchemy")  # the root logger and those that log a store's URI


def redact_logs(*urls: str | None, loggers: tuple[str, ...] = LOGGERS) -> None:
    """Put a :class:`RedactingFilter` for ``urls`` on every handler of ``loggers`` (root included)."""
    for name in loggers:
        for handler in logging.getLogger(name).handlers:
            handler.filters = [f for f in handler.filters if not isinstance(f, RedactingFilter)]
            handler.addFilter(RedactingFilter(*urls))
