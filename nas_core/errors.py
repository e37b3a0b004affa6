"""The project's one user-facing error type.

Anything a user can get wrong (a malformed file, an unknown op name, an impossible value) raises
`ProxylessError` with a one-line message; the CLI turns it into stderr text and exit code 2.
"""


class ProxylessError(ValueError):
    """A user mistake: the message is one line and names the file or field at fault."""

    def __init__(self, message: object = "") -> None:
        # a value echoed from user data may hold line breaks; the message stays one line
        text = str(message)
        super().__init__(text.replace("\r", "\\r").replace("\n", "\\n"))


def first_line(error: BaseException) -> str:
    """The first line of a library's (often multi-line) error, or its type when it is empty."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
