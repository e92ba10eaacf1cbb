import { ErrorResponse, Move, MoveList, MoveParams, MovesQuery, StartMoveRequest } from '@tenantdb/contracts';
import { requestContext as ctx, type HttpApp } from '@tenantdb/http';
import type { MovesService } from './moves.service';

const admin = { scope: 'admin' } as const;
const adminRead = { scope: 'admin:read' } as const;
const tags = ['admin'];

export function movesRoutes(app: HttpApp, service: MovesService): void {
  app.post(
    '/api/database/admin/moves',
    {
      config: admin,
      schema: {
        summary:
          'Move an allocation to another server (named, or anywhere with room); asynchronous, follow it with GET …/moves/{id}',
        tags,
        body: StartMoveRequest,
        response: { 202: Move, 400: ErrorResponse, 404: ErrorResponse, 409: ErrorResponse },
      },
    },
    async (request, reply) => {
      const move = await service.start(request.body, ctx(request));
      reply.status(202);
      return move;
    },
  );

  app.get(
    '/api/database/admin/moves',
    {
      config: adminRead,
      schema: {
        summary: 'List moves, newest first',
        tags,
        querystring: MovesQuery,
        response: { 200: MoveList },
      },
    },
    async (request) => service.list(request.query),
  );

  app.get(
    '/api/database/admin/moves/:id',
    {
      config: adminRead,
      schema: {
        summary: 'One move with its phase and progress',
        tags,
        params: MoveParams,
        response: { 200: Move, 404: ErrorResponse },
      },
    },
    async (request) => service.get(request.params.id),
  );

  app.post(
    '/api/database/admin/moves/:id/cancel',
    {
      config: admin,
      schema: {
        summary: 'Cancel a move that has not cut over; everything on the target is undone',
        tags,
        params: MoveParams,
        response: { 202: Move, 404: ErrorResponse, 409: ErrorResponse },
      },
    },
    async (request, reply) => {
      const move = await service.cancel(request.params.id, ctx(request));
      reply.status(202);
      return move;
    },
  );
}
