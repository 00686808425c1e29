"""DBOS's communication examples (seed 002): values, messages, streams, with the public API.

``manage.py demo`` runs them: ``dbos-values``, ``dbos-messages``, ``dbos-streams``.
"""
