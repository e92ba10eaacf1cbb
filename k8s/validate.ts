// Validates rendered Kubernetes objects against the Kubernetes API schema, offline, two ways:
// kubernetes-models (types, required fields, formats, enums) and the API field lists of
// @kubernetes/client-node's generated models (a field the API does not know — a typo, a field at
// the wrong level — is an error, as `kubectl apply --validate=strict` would make it).
import * as k8s from '@kubernetes/client-node';

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  // biome-ignore lint/suspicious/noExplicitAny: manifests are checked against the schema, not typed
  [field: string]: any;
}

interface AttributeType {
  baseName: string;
  type: string;
}
type ModelClass = { getAttributeTypeMap(): AttributeType[] };

const models = k8s as unknown as Record<string, ModelClass | undefined>;

function modelClass(name: string): ModelClass | undefined {
  const model = models[name];
  return typeof model?.getAttributeTypeMap === 'function' ? model : undefined;
}

/** Fields the API does not define, as JSON paths (empty: none). */
function unknownFields(value: unknown, type: string, path: string): string[] {
  if (value === null || value === undefined) return [];
  const array = /^Array<(.+)>$/.exec(type);
  if (array) {
    if (!Array.isArray(value)) return [`${path}: must be a list`];
    return value.flatMap((item, i) => unknownFields(item, array[1]!, `${path}[${i}]`));
  }
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map) {
    if (typeof value !== 'object') return [`${path}: must be a map`];
    return Object.entries(value).flatMap(([k, v]) => unknownFields(v, map[1]!, `${path}.${k}`));
  }
  const model = modelClass(type);
  if (!model || typeof value !== 'object' || Array.isArray(value)) return [];
  const fields = new Map(model.getAttributeTypeMap().map((a) => [a.baseName, a.type]));
  return Object.entries(value).flatMap(([key, inner]) => {
    const innerType = fields.get(key);
    return innerType === undefined
      ? [`${path}.${key}: unknown field of ${type}`]
      : unknownFields(inner, innerType, `${path}.${key}`);
  });
}

/** Throws with every problem of the object; returns normally when the API would accept it. */
export async function validateObject(object: KubeObject): Promise<void> {
  const [group, version] = object.apiVersion.includes('/')
    ? object.apiVersion.split('/')
    : [undefined, object.apiVersion];
  const where = `${object.kind} ${object.metadata?.namespace ?? ''}/${object.metadata?.name}`;
  const modulePath = `kubernetes-models/${group ? `${group}/` : ''}${version}/${object.kind}`;
  let Model: new (data: unknown) => { validate(): void };
  try {
    const module = (await import(modulePath)) as Record<string, typeof Model>;
    Model = module[object.kind]!;
  } catch {
    throw new Error(`${where}: no schema for ${object.apiVersion} ${object.kind}`);
  }
  try {
    new Model(object).validate();
  } catch (err) {
    throw new Error(`${where}: ${(err as Error).message}`);
  }
  const className = `${version![0]!.toUpperCase()}${version!.slice(1)}${object.kind}`;
  if (!modelClass(className)) throw new Error(`${where}: no field list for ${className}`);
  const unknown = unknownFields(object, className, '');
  if (unknown.length) throw new Error(`${where}:\n  ${unknown.join('\n  ')}`);
}
