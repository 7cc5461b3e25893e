"""The benchmark harness (`scripts/bench`): the relay's figures against their physical ceilings."""
