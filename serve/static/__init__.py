"""The draw-a-digit page: plain HTML, CSS and JavaScript served by `cnnedge.serve.images`."""
