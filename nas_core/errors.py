"""The project's one user-facing error type.

Anything a user can get wrong (a malformed file, an unknown op name, an impossible value) raises
`ProxylessError` with a one-line message; the CLI turns it into stderr text and exit code 2.
"""


class ProxylessError(ValueError):
    """A user mistake: the message is one line and names the file or field at fault."""
