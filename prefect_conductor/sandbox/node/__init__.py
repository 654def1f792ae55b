"""The sandbox's stand-in render node: each task's real command, run on laid-out uploads."""
