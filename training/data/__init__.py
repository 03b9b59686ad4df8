"""Data sets in their original layouts, and the augmentation used to train on them."""
