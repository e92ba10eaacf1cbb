#!/bin/sh
# Entry point of the tenantdb image: `tenantdb <database-service|instance-service|database-worker|
# migrate|healthcheck>`, anything else is run as given.
# Docker secrets: every tenantdb setting NAME (TENANTDB_*, DATABASE_*, REDIS_*, INSTANCE_*) can be
# given as NAME_FILE=/path and becomes NAME=<contents of the file> (trailing newline dropped), so
# secrets never have to be plain environment variables in a stack file. Other *_FILE variables
# (SSL_CERT_FILE …) are left alone.
set -eu

for assignment in $(env | grep -oE '^(TENANTDB|DATABASE|REDIS|INSTANCE)_[A-Z0-9_]*_FILE=' || true); do
  file_var=${assignment%=}
  var=${file_var%_FILE}
  # file_var matched the pattern above: safe to expand by name.
  eval "path=\${$file_var}"
  [ -r "$path" ] || { echo "tenantdb: $file_var names $path, which cannot be read" >&2; exit 1; }
  value=$(cat "$path")
  export "$var=$value"
  unset "$file_var"
done

cd /app
case "${1:-}" in
  database-service | instance-service | database-worker)
    exec node --import tsx "services/$1/src/main.ts"
    ;;
  migrate)
    exec node --import tsx packages/catalog/src/migrate.cli.ts up
    ;;
  healthcheck)
    # Alive when the process of this container answers /healthz on its port.
    exec node -e '
      const ports = [process.env.DATABASE_SERVICE_PORT || 8005, process.env.INSTANCE_SERVICE_PORT || 8003,
        process.env.DATABASE_WORKER_PORT || 9464];
      Promise.any(ports.map((p) => fetch(`http://127.0.0.1:${p}/healthz`, { signal: AbortSignal.timeout(3000) })
        .then((r) => { if (!r.ok) throw new Error(String(r.status)); })))
        .then(() => process.exit(0), () => process.exit(1));'
    ;;
  *)
    exec "$@"
    ;;
esac
