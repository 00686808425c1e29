"""The store: the hand-written SQL, split by concern, and LISTEN/NOTIFY.

Claiming and leases (``claims``), checkpoints, channels (events, messages, waits), run
trees, trigger deliveries, limited queues, and waking up (``notify``). The models are in
``django_durable.models``, where Django expects them; both make up this layer.
"""
