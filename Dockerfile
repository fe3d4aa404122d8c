# eemt-cleanup in a container. By default it runs the daemon (scheduled and disk-pressure
# cleanups) as a sidecar of the EEMT web interface, on the web interface's data volume; any
# other command runs instead when given:
#
#   docker build -t eemt-cleanup:latest .
#   docker run --rm -v /srv/eemt:/app/data -e EEMT_DB_PATH=/app/data/jobs.db ... \
#       eemt-cleanup:latest run --dry-run          # one run (add --no-healthcheck)
#
# deploy/docker/compose.yaml and deploy/kubernetes/deployment.yaml show it next to the web
# interface; README.md, "Running as a daemon", explains them.
#
# The user. The default is root (APP_UID=0): it can delete whatever the web interface wrote,
# whoever owns it. To run as the web interface's own user instead (then the cleanup has
# exactly its rights, no more), build with that user's numeric ids:
#
#   docker build -t eemt-cleanup:latest --build-arg APP_UID=1000 --build-arg APP_GID=1000 .
#
# or choose at run time: `docker run --user 1000:1000`, compose `user: "1000:1000"`,
# Kubernetes `securityContext.runAsUser`. Everything it writes besides the data (the health
# file) goes to /tmp, so any user works.
#
# Stopping: the daemon lets a running cleanup finish the job in hand (60 s at most) before
# it exits 0, while `docker stop` waits 10 s by default: use `docker stop -t 90` (compose
# stop_grace_period: 90s). Run it with an init (`docker run --init`, compose `init: true`)
# so that nothing it starts is left a zombie.
FROM python:3.11-slim

# 0 = root; any other number creates the user "eemt" with these ids.
ARG APP_UID=0
ARG APP_GID=0
# Optional extras, comma-separated: notify (apprise), charts (matplotlib, report --png).
ARG EXTRAS=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only what the package needs (see .dockerignore); the install is a regular one, from the
# checkout, into the image's own Python: the program is /usr/local/bin/eemt-cleanup, where
# the samples in deploy/ run it.
COPY pyproject.toml README.md /src/
COPY eemt_cleanup /src/eemt_cleanup
RUN pip install "/src${EXTRAS:+[$EXTRAS]}" \
    && rm -rf /src \
    && eemt-cleanup --version

RUN if [ "$APP_UID" != 0 ]; then \
        getent group "$APP_GID" >/dev/null || groupadd --gid "$APP_GID" eemt; \
        useradd --uid "$APP_UID" --gid "$APP_GID" --no-create-home --home-dir /tmp \
            --shell /usr/sbin/nologin eemt; \
    fi
USER ${APP_UID}:${APP_GID}
WORKDIR /app

ENTRYPOINT ["eemt-cleanup"]
CMD ["daemon", "--health-file", "/tmp/eemt-cleanup.health"]
# The daemon touches its health file at least every 15 s; stale for 120 s means stuck. A
# one-off command (run, status...) touches nothing: give it --no-healthcheck.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["eemt-cleanup", "health", "--file", "/tmp/eemt-cleanup.health"]
