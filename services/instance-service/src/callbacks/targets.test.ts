import { describe, expect, it } from 'vitest';
import { createCallbackTargets } from './targets';

describe('callback targets', () => {
  it('allows any http(s) host when the allow-list is empty', () => {
    const any = createCallbackTargets([]);
    expect(any.refuse('http://127.0.0.1:9999/hook')).toBeUndefined();
    expect(any.refuse('https://portal.example.com/hook')).toBeUndefined();
    expect(any.refuse('ftp://portal.example.com/hook')).toMatch(/http or https/);
    expect(any.refuse('https://user:pw@portal.example.com/hook')).toMatch(/user or password/);
    expect(any.refuse('not a url')).toMatch(/not a URL/);
  });

  it('allows only listed hosts and subdomains of *.domain entries', () => {
    const listed = createCallbackTargets(['hooks.example.com', '*.portal.example.net', '127.0.0.1']);
    expect(listed.refuse('https://hooks.example.com/x')).toBeUndefined();
    expect(listed.refuse('https://HOOKS.example.com/x')).toBeUndefined();
    expect(listed.refuse('https://a.portal.example.net/x')).toBeUndefined();
    expect(listed.refuse('http://127.0.0.1:8080/x')).toBeUndefined();
    expect(listed.refuse('https://portal.example.net/x')).toMatch(/ALLOWED_HOSTS/);
    expect(listed.refuse('https://evilportal.example.net/x')).toMatch(/ALLOWED_HOSTS/);
    expect(listed.refuse('https://hooks.example.com.evil.io/x')).toMatch(/ALLOWED_HOSTS/);
    expect(listed.refuse('http://169.254.169.254/latest/meta-data')).toMatch(/ALLOWED_HOSTS/);
  });
});
