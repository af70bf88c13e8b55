"""A local Redis finder and the emulated cluster (kmock + the real operator) that the demo,
the tests and the benchmarks share.

Imports everything below it; nothing in the library imports it.
"""
