"""A local gateway that serves the channel providers' HTTP APIs on 127.0.0.1, with fault
injection: ``start_sandbox()`` (tests, demo), ``cli.run()`` (foreground), ``SandboxClient``."""
