"""Reusable Keras layers (SPADE, PONO, residual blocks, ConvGRU): built by issues 3 and 4."""
