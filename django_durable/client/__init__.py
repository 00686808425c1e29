"""The client: starting runs and talking to them from application code.

Start (``starting``), find (``runs``, ``lookup``), hold (``handle.RunHandle``), operate
(``operating``: cancel, retry, prune), and talk: events and messages (``messaging``),
values (``values``) and streams (``streams``). The public names are re-exported by
``django_durable``.
"""
