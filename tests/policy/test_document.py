"""The document pipeline any model goes through: located issues, tagged unions, secrets hidden."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from router.policy.document import Problem, validate_document
from router.policy.source import read_source


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Cat(_Strict):
    kind: Literal["cat"]
    lives: int = 9


class Dog(_Strict):
    kind: Literal["dog"]
    name: str


class Pets(_Strict):
    owner: str
    pets: list[Annotated[Cat | Dog, Field(discriminator="kind")]] = []


def issues(text: str, env: dict[str, str] | None = None, **kwargs: object) -> list[str]:
    result = validate_document(Pets, read_source(text, "p.yaml"), env or {}, **kwargs)  # type: ignore[arg-type]
    assert isinstance(result, list), result
    return [str(issue) for issue in result]


def test_a_valid_document_is_the_model() -> None:
    pets = validate_document(
        Pets, read_source("owner: ${WHO}\npets: [{kind: cat}]\n", "p.yaml"), {"WHO": "al"}
    )
    assert pets == Pets(owner="al", pets=[Cat(kind="cat")])


def test_a_tagged_union_is_located_by_its_tag() -> None:
    text = "owner: al\npets:\n  - {kind: dgo, name: rex}\n  - {kind: cat, lives: many}\n  - {name: x}\n"
    assert issues(text) == [
        "p.yaml:3:12: unknown kind 'dgo'; did you mean 'dog'? (pets[0].kind)",
        "p.yaml:4:24: expected a whole number (pets[1].lives)",
        "p.yaml:5:5: missing required key 'kind' (pets[2].kind)",
    ]


def test_checks_run_on_the_model_and_a_value_from_the_environment_is_hidden() -> None:
    def checks(pets: Pets) -> list[Problem]:
        return [Problem(("owner",), f"{pets.owner} owns nothing")] if not pets.pets else []

    assert issues("owner: ${WHO}\n", {"WHO": "al-the-secret-owner"}, checks=checks) == [
        "p.yaml:1:8: *** owns nothing (owner)"
    ]


def test_a_verbatim_subtree_is_neither_interpolated_nor_reported() -> None:
    text = "owner: al\nnotes: {a: '${UNSET}'}\n"
    assert issues(text, verbatim=[("notes",)]) == [
        "p.yaml:2:1: unknown key 'notes'; expected one of: owner, pets (notes)"
    ]
