"""System checks of the HTTP API: an access policy it can use."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error, register
from django.core.exceptions import ImproperlyConfigured

from .access import get_access_policy


@register("django_durable")
def check_access_policy(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Check that ``API_ACCESS_POLICY`` names a policy whose hooks take ``request=``."""
    get_access_policy.cache_clear()
    try:
        get_access_policy()
    except (ImproperlyConfigured, ImportError) as exc:
        return [Error(str(exc), id="django_durable.E003")]
    return []
