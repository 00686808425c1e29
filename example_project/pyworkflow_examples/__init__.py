"""pyworkflow's Celery examples (seed 004), all ten, written with django-durable's public API.

The workflows are in ``workflows/`` (one module per example), the scenarios that
``manage.py demo`` runs in ``scenarios/``, registered by ``scenario.py``.
"""
