"""Per-run access tokens: made for one run, checked on every request that carries one.

A token is ``dur_<selector>_<secret>``: the selector (16 hex characters) finds its row, and
only the SHA-256 of the secret is stored, compared in constant time. It carries abilities
("read" a run and its values, "stream" its streams, "send" it messages), expires, and
can be revoked; it reaches the runs its run started only if it says so.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Iterable
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.db.models import BooleanField, ExpressionWrapper, Q

from ..core import clock
from ..core.durations import to_seconds
from ..exceptions import TokenRefused
from ..models import Run, RunToken
from .lookup import db_alias, get_row, run_ref

ABILITIES = ("read", "stream", "send")
PREFIX = "dur_"
# The longest a token may live: one that outlives its purpose is a credential lying about.
LONGEST = 30 * 86400
_SELECTOR_CHARS = 16
_SHAPE = re.compile(r"[0-9a-f]{16}_[A-Za-z0-9_-]{43}", re.ASCII)


@dataclasses.dataclass(frozen=True, slots=True)
class TokenGrant:
    """What a checked token allows: the run it was made for, and its children or not."""

    run_id: uuid.UUID
    abilities: frozenset[str]
    include_children: bool

    def reaches(self, run_id: uuid.UUID) -> bool:
        """Return whether the token reaches ``run_id``: its own run, or one under it."""
        if run_id == self.run_id:
            return True
        return self.include_children and _descends_from(run_id, self.run_id)


def create_token(
    run_id: str | uuid.UUID | None = None,
    abilities: Iterable[str] = ABILITIES,
    expires_in: timedelta | float = timedelta(hours=1),
    *,
    include_children: bool = False,
    key: str | None = None,
) -> str:
    """Return a new token for the run; the only time its secret exists in full.

    ``key=`` names the run by its idempotency key instead of its id.
    """
    granted = _abilities(abilities)
    seconds = to_seconds(expires_in, "expires_in=")
    if not 0 < seconds <= LONGEST:
        raise ValueError("expires_in= must be more than 0 seconds and at most 30 days.")
    run = get_row(run_ref(run_id, key))
    selector = secrets.token_hex(_SELECTOR_CHARS // 2)
    secret = secrets.token_urlsafe(32)
    RunToken.objects.using(db_alias()).create(
        run=run,
        selector=selector,
        digest=_digest(secret),
        abilities=list(granted),
        include_children=bool(include_children),
        expires_at=clock.database_time(seconds),  # the database's clock: web hosts' clocks drift
    )
    return f"{PREFIX}{selector}_{secret}"


async def acreate_token(
    run_id: str | uuid.UUID | None = None,
    abilities: Iterable[str] = ABILITIES,
    expires_in: timedelta | float = timedelta(hours=1),
    *,
    include_children: bool = False,
    key: str | None = None,
) -> str:
    """Return a new token for the run (async)."""
    return await sync_to_async(create_token)(
        run_id, abilities, expires_in, include_children=include_children, key=key
    )


def revoke_tokens(run_id: str | uuid.UUID | None = None, *, key: str | None = None) -> int:
    """End every token of the run now; return how many were still in force.

    ``key=`` names the run by its idempotency key instead of its id.
    """
    run = run_ref(run_id, key)
    if not Run.objects.using(db_alias()).filter(pk=run).exists():
        get_row(run)  # raises RunNotFound, worded as everywhere
    tokens = RunToken.objects.using(db_alias()).filter(run_id=run, revoked_at__isnull=True)
    return tokens.update(revoked_at=clock.database_time(0))


async def arevoke_tokens(run_id: str | uuid.UUID | None = None, *, key: str | None = None) -> int:
    """End every token of the run now (async)."""
    return await sync_to_async(revoke_tokens)(run_id, key=key)


def is_token(text: str) -> bool:
    """Return whether ``text`` looks like one of our tokens (not a project's own bearer)."""
    return text.startswith(PREFIX)


def check_token(text: str, ability: str) -> TokenGrant:
    """Return what the token allows if it is in force and carries ``ability``.

    Raises ``TokenRefused`` saying why not: invalid, expired, revoked or not granted.
    """
    selector, _, secret = text.removeprefix(PREFIX).partition("_")
    row = None
    # Only what create_token makes reaches the database (no NUL, no lone surrogate).
    if _SHAPE.fullmatch(f"{selector}_{secret}"):
        # Expired by the database's clock, which every web host shares.
        expired = ExpressionWrapper(
            Q(expires_at__lte=clock.database_time(0)), output_field=BooleanField()
        )
        tokens = RunToken.objects.using(db_alias()).filter(selector=selector)
        row = tokens.annotate(expired=expired).first()
    # Compared whether or not a row was found, so that timing says nothing either way.
    expected = row.digest if row is not None else "0" * 64
    if not hmac.compare_digest(expected, _digest(secret)) or row is None:
        raise TokenRefused("The token is not valid.", reason="invalid")
    if row.revoked_at is not None:
        raise TokenRefused("The token was revoked.", reason="revoked")
    if row.expired:
        raise TokenRefused("The token has expired.", reason="expired")
    if ability not in row.abilities:
        raise TokenRefused(f"The token does not grant {ability!r}.", reason="not_granted")
    return TokenGrant(row.run_id, frozenset(row.abilities), row.include_children)


def _abilities(abilities: Iterable[str]) -> tuple[str, ...]:
    chosen = (abilities,) if isinstance(abilities, str) else tuple(abilities)
    unknown = sorted({str(ability) for ability in chosen} - set(ABILITIES))
    if unknown or not chosen:
        raise ValueError(
            f"abilities= takes one or more of {', '.join(ABILITIES)}, "
            f"not {', '.join(map(repr, unknown)) or 'nothing'}."
        )
    return tuple(ability for ability in ABILITIES if ability in chosen)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def _descends_from(run_id: uuid.UUID, ancestor: uuid.UUID) -> bool:
    """Return whether ``ancestor`` is the parent, grandparent... of ``run_id``."""
    runs = Run.objects.using(db_alias())
    current = run_id
    for _ in range(64):  # deeper than MAX_CHILD_DEPTH allows; never loops for ever
        parent = runs.filter(pk=current).values_list("parent_id", flat=True).first()
        if parent is None:
            return False
        if parent == ancestor:
            return True
        current = parent
    return False
