"""What a pod embeds: ``ServerDriver`` reports load and routing state and confirms or drops
links.

Imports ``store`` and ``core``; never kopf or kubernetes.
"""
