# syntax=docker/dockerfile:1
# Atrium: one image for every role (web, worker, beat, migrate); the command chooses the role.
# The commands and environment variables match docker-compose.yml, the Helm chart and the cluster test
# (config/cluster.py); deploy/check.py keeps them in step.

# --- build: a virtualenv with Atrium's pinned dependencies, static files collected -------------------------------
FROM python:3.11.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
WORKDIR /app
COPY pyproject.toml README.md ./
COPY config ./config
COPY tenants ./tenants
COPY access ./access
COPY audit ./audit
COPY inference ./inference
# Editable, so the package is imported from /app where templates/ and static/ live (BASE_DIR); the final stage
# copies /app and /opt/venv to the same paths.
RUN /opt/venv/bin/pip install -e .
COPY manage.py ./
COPY templates ./templates
COPY static ./static
# collectstatic needs settings, not secrets: throw-away values that exist only in this RUN's environment.
RUN DJANGO_SETTINGS_MODULE=config.settings.production DJANGO_SECRET_KEY=collectstatic-only \
    ATRIUM_ENCRYPTION_KEYS=Y29sbGVjdHN0YXRpYy1vbmx5LWtleS0wMDAwMDAwMDA= \
    ATRIUM_PLATFORM_AUDIT_KEY=collectstatic-only ATRIUM_AUDIT_CHECKPOINT_KEY=collectstatic-only \
    /opt/venv/bin/python manage.py collectstatic --noinput -v 0

# --- runtime: no compiler, no pip cache, an unprivileged user -------------------------------------------------------
FROM python:3.11.11-slim-bookworm AS runtime
LABEL org.opencontainers.image.title="Atrium" \
      org.opencontainers.image.description="Multi-tenant gateway and web chat for Claude" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_SETTINGS_MODULE=config.settings.production \
    ATRIUM_LOG_FORMAT=json \
    ATRIUM_MEDIA_ROOT=/var/lib/atrium/media \
    ATRIUM_AUDIT_CHECKPOINT_DIR=/var/lib/atrium/audit-checkpoints \
    PROMETHEUS_MULTIPROC_DIR=/tmp/atrium-metrics \
    GUNICORN_BIND=0.0.0.0:8000
RUN groupadd --system --gid 10001 atrium \
    && useradd --system --uid 10001 --gid atrium --home-dir /app --shell /usr/sbin/nologin atrium \
    && mkdir -p /var/lib/atrium/media /var/lib/atrium/audit-checkpoints \
    && chown -R atrium:atrium /var/lib/atrium
COPY --from=build /opt/venv /opt/venv
COPY --from=build --chown=root:root /app /app
WORKDIR /app
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os,urllib.request as u; r=u.Request('http://127.0.0.1:8000/healthz', headers={'Host': os.environ.get('ATRIUM_BASE_DOMAIN', 'localhost')}); u.urlopen(r, timeout=4)"]
# The web role; compose and the chart override the command for worker, beat and migrate.
CMD ["python", "-m", "config.serve"]
