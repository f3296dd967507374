"""Workloads: how simulated applications use memory (distributions, masim configs, damo records)."""
