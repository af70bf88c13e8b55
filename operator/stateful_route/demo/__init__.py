"""``stateful-route demo``: traffic through real gateways and a story of pod events on the
emulated cluster, and its live display.

Imports ``testing`` and below.
"""
