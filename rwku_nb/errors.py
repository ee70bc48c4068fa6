"""The one error type users see: a message that says what was wrong, where, and how to fix it."""


class RwkuError(Exception):
    """Bad input or environment, with an actionable message (file, row, key, expected value, fix)."""
