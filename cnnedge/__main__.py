"""Allow `python -m cnnedge`."""

from cnnedge.cli import main

main()
