/** Who asked and which request it was: what a service records in its audit events. */
export interface RequestContext {
  actor: string;
  requestId: string;
}

/** The context of an authenticated request: the token's name as actor, Fastify's request id. */
export function requestContext(request: { principal?: { name: string }; id: string }): RequestContext {
  return { actor: request.principal?.name ?? 'unknown', requestId: request.id };
}
