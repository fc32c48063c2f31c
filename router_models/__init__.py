"""Learned decision models (routers, reasoning-mode switcher), their training and evaluation.

Nothing here knows about HTTP or imports `service`.
"""
