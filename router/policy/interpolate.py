"""`${VAR}` and `${VAR:-default}` in policy strings, taken from the environment.

Values taken from the environment are often secrets, so the result lists them for the
caller to keep out of messages, and problems name variables, never values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Interpolated", "interpolate"]

# `$${` first, so that an escaped `${` is never read as the start of a reference.
_TOKEN = re.compile(r"\$\$\{|\$\{(?P<body>[^}]*)(?P<close>\}?)")
_BODY = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Interpolated:
    """A string with its references replaced.

    `secrets` are the substrings that came from the environment; `problems` say what could
    not be replaced (an unset variable without a default, a malformed reference).
    """

    text: str
    secrets: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()


def interpolate(text: str, env: Mapping[str, str]) -> Interpolated:
    """Replace every `${NAME}` / `${NAME:-default}` in `text`; `$${` stands for a literal `${`.

    As in a POSIX shell, the default applies when the variable is unset or empty.
    """
    if "${" not in text:
        return Interpolated(text)
    secrets: list[str] = []
    problems: list[str] = []

    def replace(token: re.Match[str]) -> str:
        if token.group(0) == "$${":
            return "${"
        reference = _BODY.fullmatch(token.group("body"))
        if reference is None or not token.group("close"):
            problems.append(
                "malformed reference: expected ${NAME} or ${NAME:-default} (write $${ for a literal ${)"
            )
            return ""
        name, default = reference.group("name"), reference.group("default")
        value = env.get(name)
        if default is not None and not value:
            return default
        if value is None:
            problems.append(f"environment variable {name!r} is not set and the reference has no default")
            return ""
        if value:
            secrets.append(value)
        return value

    result = _TOKEN.sub(replace, text)
    return Interpolated(result, tuple(secrets), tuple(problems))
