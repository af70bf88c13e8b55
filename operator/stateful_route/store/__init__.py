"""Redis: connecting from a URL, the key layout, the Lua scripts and the code that runs them
(links, route tables, eviction), and the change channel's messages.

Imports only ``core``; never kopf or kubernetes.
"""
