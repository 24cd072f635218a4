"""cnnedge: train the seed digit CNN, export it, and serve it on a small machine."""

__version__ = "0.1.0"
