"""A stand-in for the Jobs host's ``ix`` module, and the pytest fixture that installs it."""
