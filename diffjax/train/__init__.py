"""The trainer: state, optimizer, sharding, checkpoints, metric writers and the loop."""
