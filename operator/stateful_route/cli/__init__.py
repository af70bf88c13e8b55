"""The ``stateful-route`` Typer app and its admin commands.

Top layer: may import anything.
"""
