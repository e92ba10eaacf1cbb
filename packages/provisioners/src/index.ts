export * from './kubernetes';
export {
  buildAdminSecret,
  buildCnpgCluster,
  buildHeadlessService,
  buildStatefulSet,
  K8S_LABELS,
  type KubernetesMode,
  type KubernetesObjectOptions,
  summarizePods,
} from './kubernetes.objects';
export * from './local';
export { localMaxConnections } from './local.postgres';
export * from './provisioner';
export * from './ready';
export * from './swarm';
export { type DockerEndpoint, dockerClient } from './swarm.docker';
export * from './swarm.objects';
export * from './swarm.tasks';
export * from './tuning';
