"""Data files: the known images and the toolchain-to-runtime table."""
