"""One error model: every refusal or failure the console reports to a person (page, CLI,
API answer) is a ConsoleError whose `message` is plain words, safe to show and to log.
Pages show it with `show_error`, the CLI prints it in one line; anything else is a bug."""

from __future__ import annotations


class ConsoleError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
