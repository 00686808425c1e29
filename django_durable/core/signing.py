"""The signed tokens of callback URLs: ``<callback id>.<signature>``.

The signature is an HMAC-SHA256 of the id with ``SECRET_KEY`` (Django's ``Signer``, with a
salt of its own), checked in constant time and against ``SECRET_KEY_FALLBACKS`` too. Nothing
secret is stored: the same URL can be made again on every replay of the run, and a copy of
the database (or of a run's records) completes no callback.
"""

from __future__ import annotations

from django.core.signing import BadSignature, Signer

_SALT = "django_durable.callbacks"
_SEP = "."


def _signer() -> Signer:
    return Signer(salt=_SALT, sep=_SEP, algorithm="sha256")


def callback_token(callback_id: str) -> str:
    """Return the signed token of a callback, the last segment of its URL."""
    return _signer().sign(callback_id)


def callback_id_of(token: str) -> str | None:
    """Return the callback id a token was signed for, or ``None`` if its signature is bad."""
    if not isinstance(token, str) or _SEP not in token or len(token) > 200:
        return None
    try:
        return _signer().unsign(token)
    except BadSignature:
        return None
