#!/usr/bin/env bash
# A single-node Docker Swarm on this machine and an offline Postgres image, for the swarm
# provisioner's end-to-end suite (`pnpm test:swarm`). Idempotent: safe to run again.
#
#   .ci/swarm-sandbox.sh up       install docker.io if missing, start dockerd, init swarm, build image
#   .ci/swarm-sandbox.sh status   exit 0 if the swarm is active and the image present, 1 otherwise
#   .ci/swarm-sandbox.sh down     leave the swarm (its services go with it), stop the dockerd it started
#
# Needs root (or sudo) on Debian/Ubuntu. No registry needs to be reachable: the image is assembled
# from the machine's own PostgreSQL 15 binaries (Debian's postgresql-15) plus a static busybox,
# FROM scratch. Its tag names a loopback registry so the swarm agent's pull attempt (it always
# tries) stays on 127.0.0.1 and fails fast, after which the local image is used.
# The image mimics the official postgres image's interface: POSTGRES_USER, POSTGRES_PASSWORD or
# POSTGRES_PASSWORD_FILE, PGDATA, and `postgres -c name=value …` arguments (passed through as an
# argument vector, so values may contain spaces or quotes).
#
# Adapted from the team's shared tool; owned here (tests must not depend on anything outside the
# repository). Bump SANDBOX_VERSION when the image recipe changes: an older image is rebuilt.
set -euo pipefail
IMAGE=${TENANTDB_TEST_IMAGE:-127.0.0.1:5999/tenantdb/postgres:15}
STATE=${SWARM_SANDBOX_STATE:-/tmp/tenantdb-swarm-sandbox}
PGBIN=${PG_BINDIR:-/usr/lib/postgresql/15}
SANDBOX_VERSION=3
DOCKER=/usr/bin/docker # Debian's client matches Debian's daemon; /usr/local/bin/docker may be newer
mkdir -p "$STATE"

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
apt_install() {
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null 2>&1 || {
    $SUDO apt-get update -qq >/dev/null 2>&1
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
  }
}
docker_() { $SUDO "$DOCKER" "$@"; }
# Debian's docker.io puts the daemon in /usr/sbin, which a non-root PATH may not include.
dockerd_path() {
  local d
  for d in /usr/sbin/dockerd /usr/bin/dockerd; do [ -x "$d" ] && { echo "$d"; return; }; done
  command -v dockerd || true
}

up() {
  [ -n "$(dockerd_path)" ] && [ -x "$DOCKER" ] || apt_install docker.io
  { [ -x /bin/busybox ] && /bin/busybox --list | grep -qx su; } || apt_install busybox-static
  [ -x "$PGBIN/bin/postgres" ] || apt_install postgresql-15
  if ! docker_ info >/dev/null 2>&1; then
    # Started in its own session so it outlives this script (CI runs the tests after it).
    $SUDO setsid "$(dockerd_path)" --host unix:///var/run/docker.sock >"$STATE/dockerd.log" 2>&1 &
    echo $! >"$STATE/dockerd.pid"
    for _ in $(seq 1 60); do docker_ info >/dev/null 2>&1 && break; sleep 0.5; done
    docker_ info >/dev/null 2>&1 || {
      echo "dockerd did not start; see $STATE/dockerd.log" >&2
      exit 1
    }
  fi
  [ "$(docker_ info --format '{{.Swarm.LocalNodeState}}')" = active ] ||
    docker_ swarm init --advertise-addr 127.0.0.1 >/dev/null
  [ "$(image_version)" = "$SANDBOX_VERSION" ] || build_image
  echo "swarm ready; image $IMAGE; DOCKER_HOST=unix:///var/run/docker.sock"
}

image_version() {
  docker_ image inspect --format '{{ index .Config.Labels "tenantdb.sandbox-version" }}' "$IMAGE" 2>/dev/null || true
}

build_image() {
  local ctx="$STATE/image" r="$STATE/image/rootfs"
  rm -rf "$ctx"
  mkdir -p "$r/bin" "$r/etc" "$r/tmp" "$r/var/run/postgresql" "$r/var/lib/postgresql" \
    "$r/usr/lib/postgresql" "$r/usr/share/postgresql"
  chmod 1777 "$r/tmp"
  cp /bin/busybox "$r/bin/busybox"
  for c in sh mkdir chown chmod cat echo su id env sleep rm ls; do ln -s busybox "$r/bin/$c"; done
  cp -a "$PGBIN" "$r/usr/lib/postgresql/"
  cp -a "/usr/share/postgresql/$(basename "$PGBIN")" "$r/usr/share/postgresql/"
  for b in "$PGBIN"/bin/* "$PGBIN"/lib/*.so; do ldd "$b" 2>/dev/null || true; done |
    awk '/=>/ {print $3} /ld-linux/ {print $1}' | sort -u | while read -r l; do
      [ -f "$l" ] && mkdir -p "$r$(dirname "$l")" && cp -L "$l" "$r$l"
    done
  printf 'root:x:0:0::/root:/bin/sh\npostgres:x:999:999::/var/lib/postgresql:/bin/sh\n' >"$r/etc/passwd"
  printf 'root:x:0:\npostgres:x:999:\n' >"$r/etc/group"
  cat >"$r/entrypoint.sh" <<'EP'
#!/bin/sh
# Like the official image: initialise PGDATA on first start with POSTGRES_USER and the password
# (from POSTGRES_PASSWORD_FILE, e.g. a Docker secret, or POSTGRES_PASSWORD), then run postgres as
# the postgres user with the container's arguments.
set -e
export PGDATA=${PGDATA:-/var/lib/postgresql/data}
if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then POSTGRES_PASSWORD=$(cat "$POSTGRES_PASSWORD_FILE"); fi
mkdir -p "$PGDATA" /var/run/postgresql
chown -R postgres:postgres "$PGDATA" /var/run/postgresql
chmod 700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  umask 077
  printf '%s\n' "$POSTGRES_PASSWORD" >/tmp/pw
  chown postgres /tmp/pw
  su -s /bin/sh -c 'exec initdb -D "$0" -U "$1" --pwfile=/tmp/pw --auth=scram-sha-256 >/dev/null' \
    -- postgres "$PGDATA" "${POSTGRES_USER:-postgres}"
  rm -f /tmp/pw
  echo "host all all 0.0.0.0/0 scram-sha-256" >>"$PGDATA/pg_hba.conf"
fi
unset POSTGRES_PASSWORD
[ "${1:-postgres}" = postgres ] && [ $# -gt 0 ] && shift
# "$@" reaches postgres as an argument vector: nothing is re-parsed by a shell. The `--` matters:
# without it busybox su would take the arguments' own `-c` for its option.
exec su -s /bin/sh -c 'exec postgres -D "$PGDATA" -c "listen_addresses=*" "$@"' -- postgres postgres "$@"
EP
  chmod +x "$r/entrypoint.sh"
  cat >"$ctx/Dockerfile" <<DF
FROM scratch
COPY rootfs/ /
ENV PATH=/bin:$PGBIN/bin
LABEL tenantdb.sandbox-version=$SANDBOX_VERSION
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["/entrypoint.sh"]
CMD ["postgres"]
DF
  docker_ build -q -t "$IMAGE" "$ctx" >/dev/null
}

status() {
  [ "$(docker_ info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null)" = active ] &&
    [ "$(image_version)" = "$SANDBOX_VERSION" ]
}

down() {
  # Leaving a single-node swarm removes its services and secrets; then the daemon this script started.
  docker_ swarm leave --force >/dev/null 2>&1 || true
  if [ -f "$STATE/dockerd.pid" ]; then
    $SUDO kill "$(cat "$STATE/dockerd.pid")" 2>/dev/null || true
    rm -f "$STATE/dockerd.pid"
  fi
}

case "${1:-up}" in
up) up ;;
status) status ;;
down) down ;;
*)
  echo "usage: $0 up|status|down" >&2
  exit 2
  ;;
esac
