"""CoCosNet v2 (Zhou et al., CVPR 2021): the correspondence network (correspondence/), the
SPADE generator and the trainable model; `kind.CoCosNetKind` is how the commands use it."""
