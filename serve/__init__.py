"""cnnedge.serve stage."""
