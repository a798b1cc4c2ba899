"""The official CoCosNet v2 checkpoints (microsoft/CoCosNet-v2): reading its .pth files
and mapping their parameters onto this package's variables."""
