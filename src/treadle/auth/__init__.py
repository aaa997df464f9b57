"""Authentication and authorization of the HTTP API.

One machinery for every kind of auth: a ``langgraph_sdk.Auth`` instance, written by the
user (``langgraph.json`` ``"auth": {"path": ...}``) or built by treadle (built-in keys and
JWTs). :mod:`~treadle.auth.loading` finds it, :mod:`~treadle.auth.authenticate` (ASGI
middleware) turns each request into an :class:`~treadle.auth.user.AuthUser`, and
:mod:`~treadle.auth.authorize` asks its handlers what that user may do; the store applies
their filters inside its queries (:mod:`treadle.store.access`).
"""
