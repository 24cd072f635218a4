"""cnnedge.train stage."""
