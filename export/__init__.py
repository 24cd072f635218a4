"""cnnedge.export stage."""
