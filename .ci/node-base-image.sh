#!/usr/bin/env bash
# Builds an offline Node 20 base image for the tenantdb Dockerfile (NODE_IMAGE) from this machine's
# own node and npm, FROM scratch, with a static busybox for /bin/sh: no registry is reachable here
# to pull node:20-bookworm-slim. Production builds use the official image (the Dockerfile default).
#
#   bash .ci/node-base-image.sh            # builds tenantdb/node-base:20 (idempotent)
#   docker build --build-arg NODE_IMAGE=tenantdb/node-base:20 -t tenantdb:dev .
set -euo pipefail
IMAGE=${TENANTDB_NODE_BASE_IMAGE:-tenantdb/node-base:20}
STATE=${NODE_BASE_STATE:-/tmp/tenantdb-node-base}
DOCKER=${DOCKER:-docker}
NODE=$(readlink -f "$(command -v node)")
NPM_DIR=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
[ -x /bin/busybox ] || { echo "needs /bin/busybox (apt-get install busybox-static)" >&2; exit 1; }
if "$DOCKER" image inspect "$IMAGE" >/dev/null 2>&1; then echo "$IMAGE present"; exit 0; fi

ctx="$STATE/ctx"
r="$ctx/rootfs"
rm -rf "$ctx"
mkdir -p "$r/bin" "$r/usr/bin" "$r/usr/local/bin" "$r/usr/local/lib/node_modules" "$r/etc/ssl/certs" "$r/tmp" "$r/root"
chmod 1777 "$r/tmp"
cp /bin/busybox "$r/bin/busybox"
ln -s ../../bin/busybox "$r/usr/bin/env" # npm's #!/usr/bin/env node
for c in sh env cat grep printenv rm mkdir ls wget id; do ln -s busybox "$r/bin/$c"; done
cp "$NODE" "$r/usr/local/bin/node"
cp -a "$NPM_DIR" "$r/usr/local/lib/node_modules/npm"
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$r/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$r/usr/local/bin/npx"
ldd "$NODE" | awk '/=>/ {print $3} /ld-linux/ {print $1}' | sort -u | while read -r l; do
  [ -f "$l" ] && mkdir -p "$r$(dirname "$l")" && cp -L "$l" "$r$l"
done
cp -L /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/certs/"
printf 'root:x:0:0::/root:/bin/sh\nnode:x:1000:1000::/home/node:/bin/sh\ntenantdb:x:10001:10001::/tmp:/bin/sh\n' >"$r/etc/passwd"
printf 'root:x:0:\nnode:x:1000:\ntenantdb:x:10001:\n' >"$r/etc/group"
cat >"$ctx/Dockerfile" <<'DF'
FROM scratch
COPY rootfs/ /
# The machine's trust store (it may hold a proxy's CA that npm needs to reach the registry).
ENV PATH=/usr/local/bin:/bin SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
CMD ["node"]
DF
"$DOCKER" build -q -t "$IMAGE" "$ctx" >/dev/null
echo "built $IMAGE"
