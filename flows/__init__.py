import os

# Measured on a fresh machine: the temporary API server's first start migrates its database
# and overruns Prefect's default start-up timeout.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def bad_input_state(err):
    """The state a flow returns on bad input: Failed, with the one-line message, carrying the
    ``InputError`` so that the caller (a parent flow, or the entry point's one-line handler) gets
    it raised. Prefect logs an exception that escapes a flow with its whole traceback, which
    buries the line that names the file, field or value; a returned state is logged as one line."""
    from prefect.states import Failed

    return Failed(message=str(err), data=err)
