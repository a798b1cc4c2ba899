"""Domain-alignment U-Nets, dense coarsest level and hierarchical PatchMatch: issue 3."""
