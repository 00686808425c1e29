"""The example project: a shop whose orders are fulfilled by a durable workflow."""
