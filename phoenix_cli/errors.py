"""Exit codes and the errors that carry them to `main`."""

from __future__ import annotations

EXIT_OK = 0
EXIT_NEGATIVE = 1
EXIT_USAGE = 2
EXIT_CLIENT_ERROR = 3
EXIT_SERVER_ERROR = 4
EXIT_UNREACHABLE = 5


class CliError(Exception):
    """An error that ends the command with one line on stderr and a meaningful exit code."""

    code = EXIT_USAGE

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.message = " ".join(message.split())
        if code is not None:
            self.code = code

    def line(self) -> str:
        return f"phoenix: error: {self.message}"


class UsageError(CliError):
    """Bad flags, settings or config file (exit 2, like argparse)."""

    code = EXIT_USAGE


class ApiError(CliError):
    """The service answered 4xx (exit 3) or 5xx (exit 4)."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail, EXIT_CLIENT_ERROR if status < 500 else EXIT_SERVER_ERROR)
        self.status = status


class Unreachable(CliError):
    """No HTTP answer at all: refused, timed out, unknown name (exit 5)."""

    code = EXIT_UNREACHABLE

    def __init__(self, service: str, url: str, reason: str):
        super().__init__(
            f"cannot reach the {service} at {url} ({reason}); is it running? start it with 'make dev-up'"
        )

    def line(self) -> str:
        return f"phoenix: {self.message}"
