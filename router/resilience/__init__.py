"""Pure resilience logic driven by an injected clock: breaker, limiter, backoff, retry budget."""
