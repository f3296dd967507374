"""The simulated host: memory nodes, applications, page placement, DAMON/DAMOS, throughput."""
