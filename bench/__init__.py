"""The scale benchmark (python -m bench.run) and its tick driver (python -m bench.driver)."""

import os

# The benchmark prints its own table; Prefect's per-task INFO lines would bury it.
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
