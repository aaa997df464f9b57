"""Store URLs in messages: the one place a URL is made safe to print.

Every error, log line and command line that shows a store URL passes it through
:func:`redact`, so no password (in the user-info part or a ``password=`` query option)
ever reaches a log, a terminal or an HTTP answer.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit, urlunsplit

__all__ = ["redact", "scrub"]


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``, for messages."""
    try:
        parts = urlsplit(url)
        if parts.password is None and "password" not in parts.query:
            return url  # unchanged (urlunsplit would turn sqlite:/// into sqlite:/)
        if parts.password is not None:
            netloc = parts.netloc.rsplit("@", 1)
            user = netloc[0].split(":", 1)[0]
            parts = parts._replace(netloc=f"{user}:***@{netloc[1]}")
        if "password" in parts.query:
            query = "&".join(
                f"{k}=***" if k == "password" else f"{k}={v}"
                for k, v in parse_qsl(parts.query, keep_blank_values=True)
            )
            parts = parts._replace(query=query)
        return urlunsplit(parts)
    except ValueError:
        scheme = url.split(":", 1)[0] if ":" in url else "store"
        return f"{scheme[:20]}://<unparseable URL>"


def scrub(text: str, url: str) -> str:
    """``text`` (a driver's message about ``url``) with ``url`` and its password hidden:
    libpq, for one, quotes the whole URI it could not parse."""
    text = text.replace(url, redact(url))
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
        if "@" in url and "://" in url:  # user:password@ before an unparseable host
            userinfo = url.split("://", 1)[1].rsplit("@", 1)[0]
            password = userinfo.split(":", 1)[1] if ":" in userinfo else None
    return text.replace(password, "***") if password else text
