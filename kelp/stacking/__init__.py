"""Fuse out-of-fold CNN logits and tree probabilities, choose post-processing, write masks."""
