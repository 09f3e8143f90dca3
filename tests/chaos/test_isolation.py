"""A chaos run stays on loopback: the policy is pinned to the fake upstream, other connections are refused."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from router.chaos.upstream import Endpoints, pin_policy
from router.policy import parse_policy

POLICY = """\
providers:
  openai: {type: openai, api_key: "${OPENAI_API_KEY}", organization: org-1}
  pool: {type: groq, api_keys: [a, b, c]}
  azure: {type: azure_openai, base_url: "https://x.openai.azure.com", api_version: "2024-10-21", api_key: k}
  claude: {type: anthropic}
  aws: {type: bedrock, region: us-east-1}
targets:
  a: {provider: openai, model: gpt-4o}
  b: {provider: pool, model: llama}
  c: {provider: azure, model: deployment}
  d: {provider: claude, model: claude-3-5-haiku}
  e: {provider: aws, model: anthropic.claude-3-haiku}
routes:
  chat: {targets: [a, b, c, d, e]}
state: {backend: redis, url: "redis://10.0.0.1:6379"}
"""


def test_every_provider_is_pointed_at_the_fake_upstream_with_placeholder_credentials() -> None:
    policy = parse_policy(POLICY, env={"OPENAI_API_KEY": "sk-real"})
    pinned = pin_policy(policy, Endpoints("http://127.0.0.1:9", 0.0))
    providers = pinned.providers
    assert {name: spec.base_url for name, spec in providers.items()} == {
        "openai": "http://127.0.0.1:9/v1",
        "pool": "http://127.0.0.1:9/v1",
        "azure": "http://127.0.0.1:9",
        "claude": "http://127.0.0.1:9",
        "aws": "http://127.0.0.1:9",
    }
    assert (
        providers["openai"].api_key is not None and providers["openai"].api_key.get_secret_value() == "chaos"
    )
    assert [key.get_secret_value() for key in providers["pool"].api_keys or []] == [
        "chaos-0",
        "chaos-1",
        "chaos-2",
    ]
    assert providers["aws"].aws_access_key_id is not None and providers["aws"].api_key is None
    assert providers["openai"].organization == "org-1" and providers["azure"].api_version == "2024-10-21"
    assert pinned.state.backend == "memory"  # the run chooses its own state, never the policy's Redis
    assert pinned.targets == policy.targets and pinned.routes == policy.routes


def test_a_chaos_process_refuses_connections_off_loopback() -> None:
    code = textwrap.dedent(
        """
        import socket
        from router.chaos.network import forbid_remote_connections
        forbid_remote_connections()
        for address in (("8.8.8.8", 53), ("example.com", 443)):
            try:
                socket.create_connection(address, timeout=1)
            except ConnectionRefusedError as error:
                print("refused", error)
        server = socket.create_server(("127.0.0.1", 0))
        socket.create_connection(server.getsockname(), timeout=1).close()
        print("loopback ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "refused chaos runs stay on loopback: refused a connection to '8.8.8.8'",
        "refused chaos runs stay on loopback: refused a connection to 'example.com'",
        "loopback ok",
    ]
