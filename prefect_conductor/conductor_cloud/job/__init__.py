"""The job: its model, frames, templates, packages, environment, paths, validation and catalogue."""
