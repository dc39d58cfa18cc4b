"""``taskplane simulate``'s parts: faults, the simulated log, workers, invariants, runner."""
