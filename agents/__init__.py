"""Training (stable-baselines3), baseline controllers, oracles and policy export.

Not built yet: the memory model in tierenv.hardware comes first (see the README's status).
"""
