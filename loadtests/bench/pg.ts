// pg clients for the harness. An idle client whose server goes away emits 'error'; without a
// listener that crashes the harness before it can tear down, so every client gets one (the
// failure still surfaces on the client's next query).
import pg from 'pg';

export async function connectPg(config: string | pg.ClientConfig): Promise<pg.Client> {
  const client = new pg.Client(
    typeof config === 'string'
      ? { connectionString: config, connectionTimeoutMillis: 5_000 }
      : { connectionTimeoutMillis: 5_000, ...config },
  );
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => {});
    throw err;
  }
  return client;
}

/** n connected clients, or none: on a failure the ones that did connect are closed. */
export async function connectMany(
  n: number,
  config: (i: number) => string | pg.ClientConfig,
): Promise<pg.Client[]> {
  const settled = await Promise.allSettled(Array.from({ length: n }, (_, i) => connectPg(config(i))));
  const clients = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const failed = settled.find((s) => s.status === 'rejected');
  if (failed) {
    await endAll(clients);
    throw (failed as PromiseRejectedResult).reason;
  }
  return clients;
}

export async function endAll(clients: Iterable<pg.Client>): Promise<void> {
  await Promise.all([...clients].map((c) => c.end().catch(() => {})));
}
