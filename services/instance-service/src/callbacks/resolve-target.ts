// The address a callback is delivered to: the URL's host resolved once, every answer checked
// (targets.ts), and a dispatcher that connects to the checked address whatever DNS says later
// (no rebinding between the check and the connection). TLS still verifies the host name (SNI and
// the certificate are the URL's host, not the address).
import { lookup } from 'node:dns/promises';
import { isIP, type LookupFunction } from 'node:net';
import { Agent } from 'undici';
import type { CallbackTargets } from './targets';

export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

/** Resolves a host name to all its addresses (the system resolver; tests inject their own). */
export type HostResolver = (hostname: string) => Promise<ResolvedAddress[]>;

export const systemResolver: HostResolver = async (hostname) =>
  (await lookup(hostname, { all: true, verbatim: true })).map((a) => ({
    address: a.address,
    family: a.family === 6 ? 6 : 4,
  }));

export type CallbackTarget =
  /** Connect here (the URL's host may be a name; the address is what was checked). */
  | { kind: 'pinned'; address: ResolvedAddress }
  /** Never: an address the allow-list does not permit (final, not retried). */
  | { kind: 'refused'; reason: string }
  /** The name did not resolve now (retried like any delivery problem). */
  | { kind: 'unresolved'; reason: string };

export async function resolveTarget(
  url: URL,
  targets: Pick<CallbackTargets, 'refuseAddress'>,
  resolve: HostResolver,
): Promise<CallbackTarget> {
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const version = isIP(host);
  let addresses: ResolvedAddress[];
  if (version !== 0) addresses = [{ address: host, family: version === 6 ? 6 : 4 }];
  else {
    try {
      addresses = await resolve(host);
    } catch (err) {
      const code = (err as { code?: string }).code ?? (err as Error).message;
      return { kind: 'unresolved', reason: `could not resolve ${host} (${code})` };
    }
    if (addresses.length === 0) return { kind: 'unresolved', reason: `${host} has no address` };
  }
  // Every answer is checked: a name with one public and one private address is refused.
  for (const { address } of addresses) {
    const refused = targets.refuseAddress(address);
    if (refused)
      return {
        kind: 'refused',
        reason: version === 0 ? `${host} resolves to ${address}: ${refused}` : refused,
      };
  }
  return { kind: 'pinned', address: addresses[0]! };
}

/** An undici dispatcher whose every connection goes to `pinned`, whatever host it is asked for. */
export function pinnedDispatcher(pinned: ResolvedAddress): Agent {
  const pinnedLookup: LookupFunction = (_hostname, options, callback) => {
    if (options.all) callback(null, [{ address: pinned.address, family: pinned.family }]);
    else callback(null, pinned.address, pinned.family);
  };
  return new Agent({ connect: { lookup: pinnedLookup }, connections: 1, pipelining: 0 });
}
