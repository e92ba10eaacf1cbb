export * from './kubernetes';
export { KUBERNETES_API_ACCESS, loadKubeConfig } from './kubernetes.api';
export { buildCnpgCluster } from './kubernetes.cnpg';
export {
  buildAdminSecret,
  K8S_LABELS,
  type KubernetesMode,
  type KubernetesObjectOptions,
} from './kubernetes.objects';
export { summarizePods } from './kubernetes.pods';
export { buildHeadlessService, buildStatefulSet } from './kubernetes.statefulset';
export * from './local';
export { LOCAL_DEFAULT_MAJOR, LOCAL_MAJORS } from './local.binaries';
export { localMaxConnections } from './local.postgres';
export * from './provisioner';
export * from './ready';
export * from './swarm';
export { type DockerEndpoint, dockerClient } from './swarm.docker';
export * from './swarm.objects';
export * from './swarm.tasks';
export * from './tuning';
