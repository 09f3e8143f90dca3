from __future__ import annotations

import json
import re

from router.policy import policy_json_schema


def test_the_schema_describes_a_policy_file() -> None:
    schema = policy_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "router policy"
    assert schema["type"] == "object"
    assert {"providers", "targets", "routes"} <= set(schema["properties"])
    assert set(schema["required"]) == {"providers", "targets", "routes"}
    assert schema["additionalProperties"] is False
    json.dumps(schema)  # editors read it as JSON


def test_durations_are_strings_with_a_unit() -> None:
    budget = policy_json_schema()["$defs"]["LatencyBudget"]["properties"]
    total = budget["total"]
    assert total["type"] == "string"
    pattern = re.compile(total["pattern"])
    assert all(pattern.search(text) for text in ["250ms", "30s", "2m", "1h", "1.5s"])
    assert not any(pattern.search(text) for text in ["30", "5 minutes", "30sec"])
    # An optional duration is a duration or null.
    assert {"type": "null"} in budget["per_attempt"]["anyOf"]


def test_closed_choices_are_enumerated() -> None:
    defs = policy_json_schema()["$defs"]
    assert defs["ProviderSpec"]["properties"]["type"]["enum"][:7] == [
        "openai",
        "azure_openai",
        "anthropic",
        "bedrock",
        "gemini",
        "vertex",
        "openai_compatible",
    ]
    assert set(defs["RouteSpec"]["properties"]["strategy"]["enum"]) == {
        "ordered",
        "weighted",
        "cheapest",
        "fastest",
    }
