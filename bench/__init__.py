"""The benchmarks: the deployed flow (python -m bench.run), the send step alone (bench.step),
an idle tick (bench.idle_tick); and the tick driver a test kills (python -m bench.driver)."""

import os

# The benchmark prints its own table; Prefect's per-task INFO lines would bury it.
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
