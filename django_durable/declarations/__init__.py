"""Declarations: the ``workflow`` and ``step`` decorators and the registry. Metadata only.

Above ``core`` and below everything that runs or stores a workflow: declaring one starts
nothing and touches no database.
"""
