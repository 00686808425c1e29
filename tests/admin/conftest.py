"""Fixtures shared by the admin's tests."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User


@pytest.fixture
def superuser(client):
    user = User.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    return user
