// Where callbacks may go. The portal names the URL, so it is a server-side request the caller
// controls (SSRF): production deployments list the hosts allowed in TENANTDB_CALLBACK_ALLOWED_HOSTS.
export type CallbackTargets = ReturnType<typeof createCallbackTargets>;

export function createCallbackTargets(allowedHosts: readonly string[]) {
  return {
    /** Why the URL may not be used, or undefined when it may. */
    refuse(raw: string): string | undefined {
      let url: URL;
      try {
        url = new URL(raw);
      } catch {
        return 'callback_url is not a URL';
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'callback_url must be http or https';
      if (url.username || url.password) return 'callback_url must not carry a user or password';
      if (allowedHosts.length === 0) return undefined;
      const host = url.hostname.toLowerCase();
      const allowed = allowedHosts.some((pattern) =>
        pattern.startsWith('*.') ? host.endsWith(pattern.slice(1)) : host === pattern,
      );
      return allowed ? undefined : 'the host of callback_url is not in TENANTDB_CALLBACK_ALLOWED_HOSTS';
    },
  };
}
