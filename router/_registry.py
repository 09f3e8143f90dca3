"""Named entries that users may add to: provider types, route strategies, state stores.

A policy names an entry (`type: groq`, `strategy: cheapest`, `backend: redis`); the name is checked
against the registry when the policy is validated, so an entry registered before the policy loads
serves as well as a built-in one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Generic, Protocol, TypeVar

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

__all__ = ["RegisteredName", "Registry"]

_NAME = re.compile(r"[a-z][a-z0-9_-]*")


class _Named(Protocol):
    @property
    def name(self) -> str: ...


E = TypeVar("E", bound=_Named)


class Registry(Generic[E]):
    """Entries by name, in the order they were registered; `what` names an entry in messages."""

    def __init__(self, what: str, entries: Iterable[E] = ()) -> None:
        self.what = what
        self._entries: dict[str, E] = {}
        for entry in entries:
            self.register(entry)

    def register(self, entry: E, *, replace: bool = False) -> E:
        """Add `entry` under its name; a name already taken is refused unless `replace`."""
        name = entry.name
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(
                f"{self.what} name {name!r}: lower-case letters, digits, '_' and '-', starting with a letter"
            )
        if name in self._entries and not replace:
            raise ValueError(f"{self.what} {name!r} is already registered (replace=True replaces it)")
        self._entries[name] = entry
        return entry

    def __getitem__(self, name: str) -> E:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"unknown {self.what} {name!r}; registered: {', '.join(self._entries)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def entries(self) -> tuple[E, ...]:
        return tuple(self._entries.values())


class RegisteredName(str):
    """A policy field that names an entry of a registry (`registry`, given by each subclass).

    Checked when a policy is validated, as a `Literal` of the names registered then would be; the
    JSON Schema lists the names registered when it is made. The policy loader reads `choices` to
    say which names it expected.
    """

    @staticmethod
    def registry() -> Registry[Any]:
        raise NotImplementedError

    @classmethod
    def choices(cls) -> tuple[str, ...]:
        return cls.registry().names()

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(cls._check, core_schema.str_schema())

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "enum": list(cls.choices())}

    @classmethod
    def _check(cls, value: str) -> RegisteredName:
        choices = cls.choices()
        if value not in choices:
            expected = ", ".join(repr(choice) for choice in choices)
            # The type of a Literal's error: the policy loader phrases it ("must be one of ...").
            raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})
        return cls(value)
