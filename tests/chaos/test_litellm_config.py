"""LiteLLM is configured from the policy as closely as its features allow (no LiteLLM needed here)."""

from __future__ import annotations

from router.chaos.litellm_router import litellm_config
from router.chaos.upstream import Endpoints, pin_policy
from router.demo import demo_scenario


def test_the_route_becomes_a_fallback_chain_with_the_same_retries_timeout_and_cooldown() -> None:
    scenario = demo_scenario(20.0)
    policy = pin_policy(scenario.policy, Endpoints("http://127.0.0.1:9", 0.0))
    config = litellm_config(policy, "chat")
    assert config["model_list"] == [
        {
            "model_name": "primary",
            "litellm_params": {
                "model": "openai/gpt-4o",
                "api_base": "http://127.0.0.1:9/v1",
                "api_key": "chaos",
                "max_retries": 0,
            },
            "model_info": {"id": "primary"},
        },
        {
            "model_name": "secondary",
            "litellm_params": {
                "model": "anthropic/claude-3-5-haiku",
                "api_base": "http://127.0.0.1:9",
                "api_key": "chaos",
                "max_retries": 0,
            },
            "model_info": {"id": "secondary"},
        },
        {
            "model_name": "cheap",
            "litellm_params": {
                "model": "openai/llama-3.1-8b",
                "api_base": "http://127.0.0.1:9/v1",
                "api_key": "chaos",
                "max_retries": 0,
            },
            "model_info": {"id": "cheap"},
        },
    ]
    assert config["fallbacks"] == [{"primary": ["secondary", "cheap"]}]
    # retry.attempts 2 -> one retry; per_attempt 2s; the primary's breaker: fail_max 3, reset 1s.
    assert (config["num_retries"], config["timeout"], config["stream_timeout"]) == (1, 2.0, 2.0)
    assert (config["cooldown_time"], config["allowed_fails"]) == (1.0, 2)
