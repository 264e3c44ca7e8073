"""User-facing errors: each carries a message a person can act on, never a traceback."""

from __future__ import annotations


class InfrablocksError(Exception):
    """An error caused by input or state the user controls. Printed without a traceback.

    ``exit_code`` follows the CLI convention: 2 for invalid input (configuration, arguments),
    1 for an operation that failed.
    """

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class UsageError(InfrablocksError):
    """Bad command-line arguments."""

    exit_code = 2


class ConfigError(InfrablocksError):
    """Invalid blocks.toml or block code. May carry several problems found at once."""

    exit_code = 2

    def __init__(self, message: str, *, problems: list[str] | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.problems = list(problems or [])

    def __str__(self) -> str:
        lines = [self.message, *(f"  - {p}" for p in self.problems)]
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)
