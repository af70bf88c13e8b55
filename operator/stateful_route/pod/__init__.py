"""What a pod embeds: ``ServerDriver`` reports load and routing state, confirms or drops links,
and hands its users off to other pods before it stops.

Imports ``store`` and ``core``; never kopf or kubernetes.
"""
