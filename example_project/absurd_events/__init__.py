"""Absurd's event demo (seed 000): order fulfilment waiting for events.

Written with django-durable's public API; ``manage.py demo absurd-events`` runs it.
"""
