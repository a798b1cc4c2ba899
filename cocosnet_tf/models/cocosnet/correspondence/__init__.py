"""Domain-alignment U-Nets, the dense coarsest level and hierarchical PatchMatch."""
