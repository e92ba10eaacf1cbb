// Run by local.test.ts as its own process: creates a server from the spec on stdin, prints where it
// is and exits — so the test can check that the server outlives the process that started it.
import { text } from 'node:stream/consumers';
import { createLocalProvisioner } from './local';
import type { ServerSpec } from './provisioner';

const input = JSON.parse(await text(process.stdin)) as { root: string; spec: ServerSpec };
const server = await createLocalProvisioner({ root: input.root }).create(input.spec);
process.stdout.write(JSON.stringify({ ...server, pid: process.pid }));
