#!/bin/sh
# Prints a compose/.env with fresh random secrets for the dev stack:
#   sh compose/dev-env.sh > compose/.env && chmod 600 compose/.env
# Needs openssl. Never commit the result (.gitignore lists .env files).
set -eu
rand() { openssl rand -hex 24; }
cat <<ENV
CATALOG_PASSWORD=$(rand)
TENANTDB_ADMIN_TOKEN=tdb_admin_$(rand)
TENANTDB_ALLOCATE_TOKEN=tdb_alloc_$(rand)
TENANTDB_PORTAL_TOKEN=tdb_portal_$(rand)
TENANTDB_CALLBACK_SECRET=tdb_cb_$(rand)
TENANTDB_ENCRYPTION_KEYS=k1:$(openssl rand -base64 32)
GRAFANA_ADMIN_PASSWORD=$(rand)
# The group owning the Docker socket (the workers reach the Docker API through it).
DOCKER_GID=$(stat -c %g /var/run/docker.sock 2>/dev/null || echo 999)
ENV
