# One image, three commands: `database-service`, `instance-service`, `database-worker` (and
# `migrate`, `healthcheck`). Runs the TypeScript sources through tsx, as `pnpm start:*` does;
# production dependencies only, as uid 10001, read-only root filesystem friendly (writes /tmp only).
#
#   docker build -t tenantdb:dev .
#   docker run --rm -e DATABASE_URL=… -e REDIS_URL=… … tenantdb:dev database-service
#
# NODE_IMAGE: any Node 20 image with npm and /bin/sh (default the official Debian slim image).
# CI builds offline from a base made of the machine's own node binary (.ci/node-base-image.sh).
# PG_CLIENT_PACKAGES: the PostgreSQL client tools database-worker's moves, backups and restores run
# (pg_dump/pg_restore of a major at least the servers'), installed with apt-get where the base has
# it. Debian 12 packages major 15 only: for servers of 16 or newer add PGDG's packages here, or
# mount the tools and name their directory in TENANTDB_CLIENT_TOOL_DIRS. A base without apt-get
# (CI's offline one) gets none, and says so; those jobs then fail with that reason.
ARG NODE_IMAGE=node:20-bookworm-slim
ARG PG_CLIENT_PACKAGES=postgresql-client-15

FROM ${NODE_IMAGE} AS build
WORKDIR /app
ARG PNPM_VERSION=10.34.9
RUN npm install -g --no-fund --no-audit "pnpm@${PNPM_VERSION}"
# Dependencies first, from the lockfile alone: this layer is reused until the lockfile changes.
COPY pnpm-lock.yaml pnpm-workspace.yaml ./
RUN pnpm fetch --prod
COPY . .
RUN pnpm install --offline --frozen-lockfile --prod && rm -rf /root/.cache /root/.local/share/pnpm

FROM ${NODE_IMAGE}
ARG PG_CLIENT_PACKAGES
RUN if [ -n "${PG_CLIENT_PACKAGES}" ] && command -v apt-get >/dev/null; then \
      apt-get update && apt-get install -y --no-install-recommends ${PG_CLIENT_PACKAGES} \
      && rm -rf /var/lib/apt/lists/*; \
    else echo "no PostgreSQL client tools installed (PG_CLIENT_PACKAGES='${PG_CLIENT_PACKAGES}', apt-get: $(command -v apt-get || echo none))"; fi
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app /app
COPY compose/docker-entrypoint.sh /usr/local/bin/tenantdb
USER 10001:10001
EXPOSE 8003 8005 9464
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 CMD ["tenantdb", "healthcheck"]
ENTRYPOINT ["tenantdb"]
CMD ["database-service"]
