"""``eemt-cleanup daemon``: runs the cleanup by itself, on a cron schedule and under disk
pressure, each run in a child process (see :mod:`eemt_cleanup.daemon.loop`)."""
