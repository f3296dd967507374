"""Policies that choose interleave weights: baseline controllers (``agents.controllers``) and
privileged oracles with the per-interval upper bound (``agents.oracle``); training and policy
export come next."""
