"""User-facing errors. The CLI turns these into one-line messages and a non-zero exit."""


class SmfaError(Exception):
    """A problem with the user's input (file, tensor or option); the message names it."""


class BackendUnavailable(SmfaError):
    """An explicitly requested kernel backend is not available here."""
