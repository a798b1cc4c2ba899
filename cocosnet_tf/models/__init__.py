"""Image-translation models other than CoCosNet v2 (the CoCosNet networks still live at
the package's top level)."""
