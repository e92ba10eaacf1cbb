// Where callbacks may go. The portal names the URL, so it is a server-side request the caller
// controls (SSRF). Two gates:
// - the host: when TENANTDB_CALLBACK_ALLOWED_HOSTS lists host entries (names, *.domain, IP
//   addresses), the URL's host must match one of them;
// - the address: every address the host is (a literal) or resolves to must be public. Loopback,
//   private, link-local, CGNAT, ULA, multicast, unspecified, reserved and IPv4-mapped addresses
//   are refused unless the address itself is listed, or lies inside a listed CIDR range
//   (`10.0.0.0/8`: a portal inside the cluster).
// A host name is resolved once at delivery (resolve-target.ts) and the connection goes to the
// address checked here, so a DNS answer that changes in between (rebinding) is never used.
import { BlockList, isIP } from 'node:net';

export type CallbackTargets = ReturnType<typeof createCallbackTargets>;

/** Ranges no callback goes to unless allowed explicitly (IANA special-purpose registries). */
const NOT_PUBLIC: readonly [string, number, 'ipv4' | 'ipv6'][] = [
  ['0.0.0.0', 8, 'ipv4'], // "this network", 0.0.0.0 (unspecified)
  ['10.0.0.0', 8, 'ipv4'], // private
  ['100.64.0.0', 10, 'ipv4'], // CGNAT (shared address space)
  ['127.0.0.0', 8, 'ipv4'], // loopback
  ['169.254.0.0', 16, 'ipv4'], // link-local (cloud metadata at 169.254.169.254)
  ['172.16.0.0', 12, 'ipv4'], // private
  ['192.0.0.0', 24, 'ipv4'], // IETF protocol assignments
  ['192.0.2.0', 24, 'ipv4'], // documentation
  ['192.88.99.0', 24, 'ipv4'], // 6to4 relay anycast
  ['192.168.0.0', 16, 'ipv4'], // private
  ['198.18.0.0', 15, 'ipv4'], // benchmarking
  ['198.51.100.0', 24, 'ipv4'], // documentation
  ['203.0.113.0', 24, 'ipv4'], // documentation
  ['224.0.0.0', 4, 'ipv4'], // multicast
  ['240.0.0.0', 4, 'ipv4'], // reserved, and 255.255.255.255 (broadcast)
  ['::', 96, 'ipv6'], // unspecified (::), loopback (::1), IPv4-compatible
  ['::ffff:0:0', 96, 'ipv6'], // IPv4-mapped: whatever IPv4 address it carries
  ['64:ff9b::', 96, 'ipv6'], // NAT64: may translate to a private IPv4 address
  ['64:ff9b:1::', 48, 'ipv6'], // local-use NAT64
  ['100::', 64, 'ipv6'], // discard-only
  ['2001::', 32, 'ipv6'], // Teredo
  ['2001:db8::', 32, 'ipv6'], // documentation
  ['2002::', 16, 'ipv6'], // 6to4: may embed a private IPv4 address
  ['fc00::', 7, 'ipv6'], // unique local (ULA)
  ['fe80::', 10, 'ipv6'], // link-local
  ['fec0::', 10, 'ipv6'], // site-local (deprecated)
  ['ff00::', 8, 'ipv6'], // multicast
];

// One list per family: a BlockList also matches IPv4 addresses against IPv6 rules (as ::a.b.c.d
// and ::ffff:a.b.c.d), which would put every IPv4 address inside ::/96.
const notPublic = { ipv4: new BlockList(), ipv6: new BlockList() };
for (const [net, prefix, type] of NOT_PUBLIC) notPublic[type].addSubnet(net, prefix, type);

const unbracket = (host: string) => (host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host);
const family = (address: string): 'ipv4' | 'ipv6' => (isIP(address) === 6 ? 'ipv6' : 'ipv4');

/** An allow-list entry that is a CIDR range (`10.0.0.0/8`, `fd00::/8`), or undefined. */
export function parseCidr(
  entry: string,
): { network: string; prefix: number; type: 'ipv4' | 'ipv6' } | undefined {
  const match = /^([0-9a-f:.]+)\/(\d{1,3})$/i.exec(entry);
  if (!match) return undefined;
  const network = match[1]!;
  const prefix = Number(match[2]);
  const version = isIP(network);
  if (version === 0 || prefix > (version === 4 ? 32 : 128)) return undefined;
  return { network, prefix, type: version === 4 ? 'ipv4' : 'ipv6' };
}

/** True when the address is not one callbacks may reach by default (see NOT_PUBLIC). */
export function isNotPublic(address: string): boolean {
  if (isIP(address) === 0) return false;
  const type = family(address);
  return notPublic[type].check(address, type);
}

export function createCallbackTargets(allowList: readonly string[]) {
  const hostEntries: string[] = [];
  const allowedAddresses = new BlockList(); // here: the listed addresses and ranges
  for (const raw of allowList) {
    const entry = unbracket(raw.toLowerCase());
    const cidr = parseCidr(entry);
    if (cidr) {
      allowedAddresses.addSubnet(cidr.network, cidr.prefix, cidr.type);
      continue;
    }
    hostEntries.push(entry);
    if (isIP(entry)) allowedAddresses.addAddress(entry, family(entry));
  }

  function refuseAddress(address: string): string | undefined {
    if (!isNotPublic(address) || allowedAddresses.check(address, family(address))) return undefined;
    return `callback_url points at ${address}, a loopback, private or reserved address; list it (or a CIDR range holding it) in TENANTDB_CALLBACK_ALLOWED_HOSTS to allow it`;
  }

  return {
    /**
     * Why the URL may not be used, or undefined when it may (as far as can be told without DNS:
     * a host name's addresses are checked at delivery with refuseAddress).
     */
    refuse(raw: string): string | undefined {
      let url: URL;
      try {
        url = new URL(raw);
      } catch {
        return 'callback_url is not a URL';
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'callback_url must be http or https';
      if (url.username || url.password) return 'callback_url must not carry a user or password';
      // WHATWG URL has already turned 2130706433, 0x7f.1, 017700000001 and 127.1 into 127.0.0.1.
      const host = unbracket(url.hostname.toLowerCase());
      const listed = hostEntries.some((pattern) =>
        pattern.startsWith('*.') ? host.endsWith(pattern.slice(1)) : host === pattern,
      );
      if (hostEntries.length > 0) {
        const inRange = isIP(host) !== 0 && allowedAddresses.check(host, family(host));
        if (!listed && !inRange) return 'the host of callback_url is not in TENANTDB_CALLBACK_ALLOWED_HOSTS';
      }
      if (isIP(host)) return refuseAddress(host);
      // RFC 6761: these names are loopback wherever they are resolved.
      if (!listed && (host === 'localhost' || host.endsWith('.localhost')))
        return 'callback_url points at localhost; list an address or CIDR range in TENANTDB_CALLBACK_ALLOWED_HOSTS to allow a local receiver';
      return undefined;
    },

    /** Why a resolved address may not be connected to, or undefined when it may. */
    refuseAddress,
  };
}
