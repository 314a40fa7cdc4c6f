"""Placeholder until its issue lands."""


def register(cli) -> None:
    """No commands yet."""
