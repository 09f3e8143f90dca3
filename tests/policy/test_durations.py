from __future__ import annotations

import pytest


def with_total(minimal: str, value: str) -> str:
    return minimal + f"    latency_budget:\n      total: {value}\n"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("30s", 30.0), ("2m", 120.0), ("1h", 3600.0), ("1.5s", 1.5), ('"45s"', 45.0)],
)
def test_durations_with_a_unit_are_seconds(parse, minimal, text: str, seconds: float) -> None:
    policy = parse(with_total(minimal, text))
    assert policy.routes["chat"].latency_budget.total == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["30", "1.5", "5 minutes", "30sec", '""', "-1s"])
def test_durations_without_a_known_unit_are_rejected_where_written(issues, minimal, text: str) -> None:
    [issue] = issues(with_total(minimal, text))
    assert (issue.file, issue.line, issue.column) == ("p.yaml", 12, 14)
    assert issue.path == "routes.chat.latency_budget.total"
    assert issue.message.startswith("expected a duration such as 250ms, 30s, 2m or 1h")


def test_a_rejected_duration_renders_as_file_line_column(issues, minimal) -> None:
    [issue] = issues(with_total(minimal, "5 minutes"))
    assert str(issue) == (
        "p.yaml:12:14: expected a duration such as 250ms, 30s, 2m or 1h (routes.chat.latency_budget.total)"
    )
