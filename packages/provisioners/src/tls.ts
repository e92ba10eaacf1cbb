// What every driver writes for a server that serves TLS (ServerSpec.tls): the pg_hba rules and the
// settings. Tenant roles may log in over TLS only (`hostssl`); the admin role — the platform's
// own connections: readiness, health checks, tenant DDL — may also log in without TLS, over TCP
// and the unix socket, so that a driver can reach a server before and whatever its TLS state.
// Nobody else has an entry: a tenant's plain-TCP login is refused ("no pg_hba.conf entry …
// no encryption").

/** pg_hba.conf for a TLS server whose superuser is `adminUser` (validated by the driver). */
export function tlsHbaConf(adminUser: string): string {
  if (!/^[a-zA-Z_][a-zA-Z0-9_]{0,62}$/.test(adminUser)) throw new Error(`invalid admin user ${adminUser}`);
  const admin = `"${adminUser}"`;
  return [
    '# Written by tenantdb: tenant roles log in over TLS only; the admin role also without.',
    '# TYPE   DATABASE  USER  ADDRESS  METHOD',
    `local    all       ${admin}           scram-sha-256`,
    `host     all       ${admin}  all      scram-sha-256`,
    'hostssl  all       all   all      scram-sha-256',
    '',
  ].join('\n');
}

/** The settings that turn TLS on with the certificate and key at these paths. */
export function tlsSettings(paths: { cert: string; key: string }): Record<string, string> {
  return {
    ssl: 'on',
    ssl_cert_file: paths.cert,
    ssl_key_file: paths.key,
    ssl_min_protocol_version: 'TLSv1.2',
  };
}

/** The certificate's names for a host that is a loopback address: its usual aliases too. */
export function withLoopbackAliases(host: string): string[] {
  const loopback = ['127.0.0.1', 'localhost', '::1'];
  return loopback.includes(host) ? [...new Set([host, ...loopback])] : [host];
}
