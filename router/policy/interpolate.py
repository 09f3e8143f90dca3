"""`${VAR}` and `${VAR:-default}` in policy strings, taken from the environment.

Values taken from the environment are often secrets, so the result lists them for the
caller to keep out of messages, and problems name variables, never values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Interpolated", "interpolate"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MALFORMED = "malformed reference: expected ${NAME} or ${NAME:-default} (write $${ for a literal ${)"
MAX_NESTING = 8
"""How deep a default may hold references of its own: `${A:-${B:-${C}}}` is 3 deep."""


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

    As in a POSIX shell, the default applies when the variable is unset or empty, and may
    itself hold references: `${A:-${B}}` is A, else B.
    """
    if "${" not in text:
        return Interpolated(text)
    secrets: list[str] = []
    problems: list[str] = []
    result = _expand(text, env, secrets, problems, 1)
    return Interpolated(result, tuple(secrets), tuple(dict.fromkeys(problems)))


def _expand(text: str, env: Mapping[str, str], secrets: list[str], problems: list[str], depth: int) -> str:
    parts: list[str] = []
    position = 0
    while (start := text.find("$", position)) != -1:
        parts.append(text[position:start])
        if text.startswith("$${", start):
            parts.append("${")
            position = start + 3
        elif text.startswith("${", start):
            end = _closing(text, start + 2)
            if end == -1:
                problems.append(_MALFORMED)
                return "".join(parts)
            parts.append(_reference(text[start + 2 : end], env, secrets, problems, depth))
            position = end + 1
        else:
            parts.append("$")
            position = start + 1
    parts.append(text[position:])
    return "".join(parts)


def _closing(text: str, position: int) -> int:
    """The index of the `}` that closes a reference whose body starts at `position`, or -1."""
    open_references = 1
    while position < len(text):
        if text.startswith("$${", position):
            position += 3
            continue
        if text.startswith("${", position):
            open_references += 1
            position += 2
            continue
        if text[position] == "}":
            open_references -= 1
            if not open_references:
                return position
        position += 1
    return -1


def _reference(body: str, env: Mapping[str, str], secrets: list[str], problems: list[str], depth: int) -> str:
    name_match = _NAME.match(body)
    rest = body[name_match.end() :] if name_match else body
    if name_match is None or (rest and not rest.startswith(":-")):
        problems.append(_MALFORMED)
        return ""
    name, value = name_match.group(), env.get(name_match.group())
    if rest and not value:
        if depth >= MAX_NESTING and "${" in rest:
            problems.append(f"references nested more than {MAX_NESTING} deep")
            return ""
        return _expand(rest[2:], env, secrets, problems, depth + 1)
    if value is None:
        problems.append(f"environment variable {name!r} is not set and the reference has no default")
        return ""
    if value:
        secrets.append(value)
    return value
