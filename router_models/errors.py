"""Errors a user's input can cause, reported by the command line without a traceback."""


class DataFormatError(ValueError):
    """A line of a data file does not follow the documented format; the message names file and line."""
