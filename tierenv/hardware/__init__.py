"""Hardware model: node profiles, loaded-latency curves, calibration and the throughput solver."""
