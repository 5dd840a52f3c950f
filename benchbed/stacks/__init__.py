"""Stacks: one userland (an image's root filesystem) carried through every boundary."""
