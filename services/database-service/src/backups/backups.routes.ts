import {
  Backup,
  BackupList,
  BackupParams,
  BackupsQuery,
  ErrorResponse,
  Restore,
  RestoreParams,
  RestoreRequest,
  StartBackupRequest,
} from '@tenantdb/contracts';
import { requestContext as ctx, type HttpApp } from '@tenantdb/http';
import type { BackupsService } from './backups.service';

const admin = { scope: 'admin' } as const;
const adminRead = { scope: 'admin:read' } as const;
const tags = ['admin'];

export function backupsRoutes(app: HttpApp, service: BackupsService): void {
  app.post(
    '/api/database/admin/backups',
    {
      config: admin,
      schema: {
        summary: 'Take a backup of an allocation now; asynchronous, follow it with GET …/backups/{id}',
        tags,
        body: StartBackupRequest,
        response: { 202: Backup, 404: ErrorResponse, 409: ErrorResponse, 503: ErrorResponse },
      },
    },
    async (request, reply) => {
      const backup = await service.start(request.body.instance_id, ctx(request));
      reply.status(202);
      return backup;
    },
  );

  app.get(
    '/api/database/admin/backups',
    {
      config: adminRead,
      schema: {
        summary:
          "An allocation's backups (or, without instance_id, the fleet's: e.g. status=failed), newest first",
        tags,
        querystring: BackupsQuery,
        response: { 200: BackupList },
      },
    },
    async (request) => service.list(request.query),
  );

  app.get(
    '/api/database/admin/backups/:id',
    {
      config: adminRead,
      schema: {
        summary: 'One backup with its manifest',
        tags,
        params: BackupParams,
        response: { 200: Backup, 404: ErrorResponse },
      },
    },
    async (request) => service.get(request.params.id),
  );

  app.post(
    '/api/database/admin/backups/:id/restore',
    {
      config: admin,
      schema: {
        summary:
          'Restore a backup into a new database: replacing its allocation (mode replace) or into another allocation of the same customer (mode copy); asynchronous',
        tags,
        params: BackupParams,
        body: RestoreRequest,
        response: {
          202: Restore,
          400: ErrorResponse,
          404: ErrorResponse,
          409: ErrorResponse,
          503: ErrorResponse,
        },
      },
    },
    async (request, reply) => {
      const restore = await service.restore(request.params.id, request.body, ctx(request));
      reply.status(202);
      return restore;
    },
  );

  app.get(
    '/api/database/admin/restores/:id',
    {
      config: adminRead,
      schema: {
        summary: 'One restore with its phase and progress',
        tags,
        params: RestoreParams,
        response: { 200: Restore, 404: ErrorResponse },
      },
    },
    async (request) => service.getRestore(request.params.id),
  );
}
