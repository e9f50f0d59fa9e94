"""Base classes of dynq's exceptions; one subclass per wire error name lives in _errors.py."""


class DynqError(Exception):
    """An error from dynqd or from this client, named as on the wire.

    ``name`` is the stable error name ("ENOMODEL", "EOVERLOAD", ...),
    ``code`` dynq's number for it, ``message`` what was wrong, and
    ``retryable`` whether sending the same request later may succeed.
    """

    code = 0
    retryable = False

    def __init__(self, message="", *, name=None, code=None, retryable=None):
        super().__init__(message)
        self.message = message
        self.name = name or type(self).__name__
        if code is not None:
            self.code = code
        if retryable is not None:
            self.retryable = bool(retryable)

    def __str__(self):
        return f"{self.name}: {self.message}" if self.message else self.name


class RetryableError(DynqError):
    """Base of the errors after which the same request may succeed later
    (EOVERLOAD, ESHUTDOWN, EBUSY, EDEADLINE, ...)."""

    retryable = True


class ConnectError(DynqError):
    """No dynqd answered at any of the socket paths tried.

    ``tried`` lists ``(path, errno_name, reason)`` for each path, in order.
    """

    def __init__(self, message, tried, name):
        super().__init__(message, name=name)
        self.tried = tried
