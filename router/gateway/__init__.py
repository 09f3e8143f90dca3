"""`router serve`: the router as an OpenAI- and Anthropic-compatible HTTP gateway.

    app.py             Gateway: the routes, one request's way (key, body, control, call, headers)
    wire.py            what a wire does (WireCall, Wire); openai_wire.py, anthropic_wire.py: the two wires
    failures.py        errors as HTTP answers (status, kind, message)
    keys.py            gateway.keys: lookup, routes and controls allowed, rpm and budget leases
    admin.py           /admin/*: status, drain, restore, reload
    serve.py           worker processes: one Router and one aiohttp site each, signals, graceful shutdown

Importing this package loads aiohttp's server; `router` and `router --help` never do.
"""

from router.gateway.app import Gateway

__all__ = ["Gateway"]
