"""shapes: a small CNN that tells coloured shapes apart, the model this repository ships (pruned)."""
