// HTTP client for the service under test: one keep-alive undici pool with a connection per load
// worker, so connection setup is not measured and no request waits for a free socket.
import { Pool } from 'undici';

export interface ApiResponse<T = unknown> {
  status: number;
  body: T;
}

export class ApiClient {
  private readonly pool: Pool;

  constructor(
    readonly baseUrl: string,
    private readonly token: string,
    connections: number,
  ) {
    this.pool = new Pool(baseUrl, {
      connections,
      pipelining: 1,
      // A stuck request must fail the request, not hang the benchmark.
      headersTimeout: 30_000,
      bodyTimeout: 30_000,
    });
  }

  async request<T = unknown>(
    method: 'GET' | 'POST' | 'DELETE',
    path: string,
    body?: unknown,
    token = this.token,
  ): Promise<ApiResponse<T>> {
    const res = await this.pool.request({
      method,
      path,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.body.text();
    return { status: res.statusCode, body: (text ? JSON.parse(text) : undefined) as T };
  }

  post<T = unknown>(path: string, body: unknown, token?: string) {
    return this.request<T>('POST', path, body, token);
  }

  get<T = unknown>(path: string) {
    return this.request<T>('GET', path);
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}

/** `HTTP 503: message` from an error answer, for error tallies. */
export function httpError(res: ApiResponse): string {
  const message = (res.body as { message?: unknown } | undefined)?.message;
  return `HTTP ${res.status}${typeof message === 'string' ? `: ${message.slice(0, 160)}` : ''}`;
}
