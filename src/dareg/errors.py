"""The one exception type users see: bad input, named with the file, the field and the fix."""


class DataError(ValueError):
    """Input that cannot be used as given; the message says which file or key, and how to fix it."""
