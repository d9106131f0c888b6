"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class InputError(Exception):
    """Bad input: a missing file, column or model folder, an empty dataset, a malformed parameter."""
