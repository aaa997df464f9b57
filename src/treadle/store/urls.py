"""Store URLs in messages: the one place a URL is made safe to print.

Every error, log line and command line that shows a store URL passes it through
:func:`redact`, so no password (in the user-info part or a ``password=`` query option)
ever reaches a log, a terminal or an HTTP answer.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit, urlunsplit

__all__ = ["redact"]


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
