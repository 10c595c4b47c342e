"""The Prefect tasks of a journey's tick. Importing this package plugs Prefect into the library
(events, run logs, Secret blocks: tasks/prefect_hooks.py)."""

from tasks.prefect_hooks import install

install()
