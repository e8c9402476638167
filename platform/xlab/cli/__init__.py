"""Command-line interface: `xlab jobs|run|submit|status|logs|stop|runs|ui|serve`."""

from xlab.cli.main import job_entry, main

__all__ = ["job_entry", "main"]
