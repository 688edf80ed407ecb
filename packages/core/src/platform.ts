type RequireFn = (id: string) => unknown;
interface ModuleApi {
  createRequire(from: string): RequireFn;
}
interface ProcessLike {
  getBuiltinModule?: (id: string) => unknown;
}

/**
 * Node's `require` (relative to this package), for loading an optional
 * CommonJS dependency synchronously the first time it is needed; undefined
 * outside Node. It goes through `process.getBuiltinModule` (Node >= 20.16)
 * so that no `node:*` import reaches a browser bundle.
 *
 * @example const gpujs = nodeRequire()?.('gpu.js');
 */
export function nodeRequire(from: string = import.meta.url): RequireFn | undefined {
  const proc = (globalThis as { process?: ProcessLike }).process;
  const mod = proc?.getBuiltinModule?.('node:module') as ModuleApi | undefined;
  return mod?.createRequire(from);
}
