from tests.channels.conftest import channels, client, sandbox  # noqa: F401  (shared fixtures)
