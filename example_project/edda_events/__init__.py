"""Edda's event waiting (seed 003): typed events, timers, CloudEvents.

Written with django-durable's public API; ``manage.py demo edda-typed-events`` runs it.
"""
