"""The operator: pod records, the StatefulRoute spec, pure planning and status builders, the
reconciler that writes tables and evicts, the census, metrics, and the kopf wiring.

Imports ``store`` and ``core``; only ``handlers``, ``runner`` and ``login`` import kopf, and only
``login`` and ``census`` the kubernetes client.
"""
