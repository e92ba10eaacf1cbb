import { describe, expect, it } from 'vitest';
import { createCallbackTargets, isNotPublic } from './targets';

const REFUSED = /loopback, private or reserved address/;

describe('callback targets', () => {
  it('with the empty allow-list: any http(s) host whose address is public', () => {
    const any = createCallbackTargets([]);
    expect(any.refuse('https://portal.example.com/hook')).toBeUndefined();
    expect(any.refuse('http://93.184.216.34/hook')).toBeUndefined();
    expect(any.refuse('http://[2606:4700::1111]/hook')).toBeUndefined();
    expect(any.refuse('ftp://portal.example.com/hook')).toMatch(/http or https/);
    expect(any.refuse('https://user:pw@portal.example.com/hook')).toMatch(/user or password/);
    expect(any.refuse('not a url')).toMatch(/not a URL/);
  });

  it.each([
    ['loopback', 'http://127.0.0.1:9999/hook'],
    ['loopback, elsewhere in 127/8', 'http://127.10.20.30/hook'],
    ['unspecified', 'http://0.0.0.0:8005/'],
    ['"this network"', 'http://0.1.2.3/'],
    ['private 10/8', 'http://10.0.0.5/hook'],
    ['private 172.16/12', 'http://172.20.1.1/hook'],
    ['private 192.168/16', 'http://192.168.1.1/hook'],
    ['link-local (cloud metadata)', 'http://169.254.169.254/latest/meta-data'],
    ['CGNAT 100.64/10', 'http://100.64.0.1/'],
    ['multicast', 'http://224.0.0.1/'],
    ['broadcast', 'http://255.255.255.255/'],
    ['IPv6 loopback', 'http://[::1]:8005/'],
    ['IPv6 unspecified', 'http://[::]/'],
    ['IPv6 ULA fc00::/7', 'http://[fd12:3456::1]/'],
    ['IPv6 ULA fc00::/7 (fc)', 'http://[fc00::1]/'],
    ['IPv6 link-local', 'http://[fe80::1]/'],
    ['IPv6 multicast', 'http://[ff02::1]/'],
    ['IPv4-mapped IPv6 loopback', 'http://[::ffff:127.0.0.1]/'],
    ['IPv4-mapped IPv6, hex form', 'http://[0:0:0:0:0:ffff:7f00:1]/'],
    ['IPv4-mapped IPv6 of a public address', 'http://[::ffff:93.184.216.34]/'],
    ['NAT64 of a private address', 'http://[64:ff9b::a00:1]/'],
    ['decimal host', 'http://2130706433/'],
    ['octal host', 'http://017700000001/'],
    ['hex host', 'http://0x7f000001/'],
    ['hex dotted host', 'http://0x7f.0.0.1/'],
    ['short host 127.1', 'http://127.1:8005/admin'],
    ['short host 10.1', 'http://10.1/'],
  ])('refuses %s (%s) by default', (_what, url) => {
    expect(createCallbackTargets([]).refuse(url)).toMatch(REFUSED);
  });

  it('refuses localhost names (RFC 6761) by default', () => {
    const any = createCallbackTargets([]);
    expect(any.refuse('http://localhost:8005/')).toMatch(/localhost/);
    expect(any.refuse('http://api.LOCALHOST/')).toMatch(/localhost/);
  });

  it('allows only listed hosts and subdomains of *.domain entries', () => {
    const listed = createCallbackTargets(['hooks.example.com', '*.portal.example.net', '127.0.0.1']);
    expect(listed.refuse('https://hooks.example.com/x')).toBeUndefined();
    expect(listed.refuse('https://HOOKS.example.com/x')).toBeUndefined();
    expect(listed.refuse('https://a.portal.example.net/x')).toBeUndefined();
    expect(listed.refuse('http://127.0.0.1:8080/x')).toBeUndefined();
    expect(listed.refuse('http://2130706433:8080/x')).toBeUndefined(); // the same address
    expect(listed.refuse('http://127.0.0.2:8080/x')).toMatch(/ALLOWED_HOSTS/);
    expect(listed.refuse('https://portal.example.net/x')).toMatch(/ALLOWED_HOSTS/);
    expect(listed.refuse('https://evilportal.example.net/x')).toMatch(/ALLOWED_HOSTS/);
    expect(listed.refuse('https://hooks.example.com.evil.io/x')).toMatch(/ALLOWED_HOSTS/);
    expect(listed.refuse('http://169.254.169.254/latest/meta-data')).toMatch(/ALLOWED_HOSTS/);
    // A listed name is still held to public addresses when it resolves.
    expect(listed.refuseAddress('10.0.0.1')).toMatch(REFUSED);
    expect(listed.refuseAddress('127.0.0.1')).toBeUndefined();
  });

  it('CIDR entries allow private addresses in their range (a portal inside the cluster)', () => {
    const cluster = createCallbackTargets(['portal.tenantdb.svc.cluster.local', '10.0.0.0/8', 'fd00::/8']);
    expect(cluster.refuse('http://portal.tenantdb.svc.cluster.local/hooks')).toBeUndefined();
    expect(cluster.refuseAddress('10.96.4.2')).toBeUndefined();
    expect(cluster.refuseAddress('fd00::1')).toBeUndefined();
    expect(cluster.refuseAddress('192.168.1.1')).toMatch(REFUSED);
    expect(cluster.refuseAddress('127.0.0.1')).toMatch(REFUSED);
    expect(cluster.refuse('http://10.1.2.3/hooks')).toBeUndefined(); // an address in a listed range
    expect(cluster.refuse('http://192.168.1.1/hooks')).toMatch(/ALLOWED_HOSTS/);

    // Only CIDRs: any host, public addresses and the listed ranges.
    const ranges = createCallbackTargets(['10.0.0.0/8']);
    expect(ranges.refuse('https://portal.example.com/x')).toBeUndefined();
    expect(ranges.refuse('http://10.1.2.3/x')).toBeUndefined();
    expect(ranges.refuse('http://127.0.0.1/x')).toMatch(REFUSED);
  });

  it('knows which addresses are not public', () => {
    for (const a of ['127.0.0.1', '::1', '10.1.1.1', '100.127.255.255', 'fe80::1', '::ffff:10.0.0.1'])
      expect(isNotPublic(a), a).toBe(true);
    for (const a of ['93.184.216.34', '100.128.0.1', '8.8.8.8', '2606:4700::1111'])
      expect(isNotPublic(a), a).toBe(false);
  });
});
