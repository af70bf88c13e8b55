"""Plain data and rules every layer shares: errors, constants, validation, pod and routing
state, log formatting.

Imports nothing from stateful_route; no I/O.
"""
