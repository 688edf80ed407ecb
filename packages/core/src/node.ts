/**
 * `@lowrank/core/node`: the Node-only part of core. Importing it installs
 * Node's file system as the {@link FileHost} that path-based APIs use.
 */
import { setFileHost } from './files.ts';
import { nodeFileHost } from './node/fs.ts';

setFileHost(nodeFileHost);

export {
  MANIFEST_FILE, nodeFileHost, openFileSet, removeStaleTemps, writeFileAtomic, writeFileAtomicSync, writeFileSet,
  type AtomicWriteSource, type FileSet,
} from './node/fs.ts';
export { useNodeThreads } from './node/threads.ts';
