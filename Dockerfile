# One image, three commands: `database-service`, `instance-service`, `database-worker` (and
# `migrate`, `healthcheck`). Runs the TypeScript sources through tsx, as `pnpm start:*` does;
# production dependencies only, as uid 10001, read-only root filesystem friendly (writes /tmp only).
#
#   docker build -t tenantdb:dev .
#   docker run --rm -e DATABASE_URL=… -e REDIS_URL=… … tenantdb:dev database-service
#
# NODE_IMAGE: any Node 20 image with npm and /bin/sh (default the official Debian slim image).
# CI builds offline from a base made of the machine's own node binary (.ci/node-base-image.sh).
ARG NODE_IMAGE=node:20-bookworm-slim

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
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app /app
COPY compose/docker-entrypoint.sh /usr/local/bin/tenantdb
USER 10001:10001
EXPOSE 8003 8005 9464
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 CMD ["tenantdb", "healthcheck"]
ENTRYPOINT ["tenantdb"]
CMD ["database-service"]
