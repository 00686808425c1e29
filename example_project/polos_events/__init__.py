"""Polos's event-triggered workflows (seed 001), written with django-durable's public API.

``manage.py demo`` runs them: ``polos-triggered``, ``polos-batched``, ``polos-request-response``.
"""
