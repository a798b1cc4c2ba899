"""A mixin for layers made of other layers."""


class Composite:
    """Put first among the bases of a layer or model whose sub-layers create their
    variables in its first (eager) call.

    Without a build() of its own, Keras first traces the whole call symbolically to
    create those variables, and then runs it: twice the work (the tiny test model took
    21 s to build instead of 3) and a "does not have a build() method" warning.
    """

    def build(self, input_shape):
        """Nothing to create here: the sub-layers build themselves when first called."""
