"""Prefect tasks: one module per pipeline step, each a thin @task over ``conductor_cloud``."""
