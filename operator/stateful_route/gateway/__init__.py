"""What gateways embed: ``ClientDriver``, its local link cache, the mirrored route views and
optional client metrics.

Imports ``store`` and ``core``; never kopf or kubernetes.
"""
