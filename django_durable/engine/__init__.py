"""The engine: executes one claimed run against its records and says how it ended.

``ctx`` (``Context`` and ``AsyncContext`` over the replay machinery), checkpoints,
children and in-workflow channels. It never loops, sleeps or listens: the worker, above
it, owns time and I/O. Engine and client do not import each other; they meet in the store.
"""
