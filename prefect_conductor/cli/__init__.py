"""The ``prefect-conductor`` command: its commands, the demo, and terminal display."""
