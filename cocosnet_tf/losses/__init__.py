"""GAN, feature-matching, VGG, contextual, warp and alignment losses: issue 4."""
