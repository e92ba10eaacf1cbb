// GET /api/database/ca.pem: the fleet CA certificate, the one trust anchor a tenant needs for
// sslmode=verify-full (allocate answers also carry it inline as ssl_root_cert).
import type { TlsRepo } from '@tenantdb/catalog';
import { type HttpApp, NotFoundError } from '@tenantdb/http';

export function tlsRoutes(app: HttpApp, tls: Pick<TlsRepo, 'activeCa'>): void {
  app.get(
    '/api/database/ca.pem',
    {
      config: { scope: 'allocate' },
      schema: {
        summary:
          'The fleet CA certificate (PEM) that signs the TLS certificates of the servers tenantdb creates',
        tags: ['allocations'],
      },
    },
    async (_request, reply) => {
      const ca = await tls.activeCa();
      if (!ca)
        throw new NotFoundError('no fleet CA yet: it is created with the first server tenantdb provisions');
      return reply.type('application/x-pem-file').send(ca.cert_pem);
    },
  );
}
