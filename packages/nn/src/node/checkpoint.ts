import { readFile } from 'node:fs/promises';
import { writeFileAtomic } from '@lowrank/core/node';
import { parseCheckpoint, serializeCheckpoint, type Checkpoint, type CheckpointInput } from '../checkpoint.ts';

/**
 * Writes a checkpoint atomically (temp file, fsync, rename): model, optimizer,
 * scheduler, step, core RNG and sampler state, with a SHA-256 of the contents.
 * @example await saveCheckpoint('run/ckpt.msgpack', { model, optimizer, step, sampler });
 */
export async function saveCheckpoint(path: string, s: CheckpointInput): Promise<void> {
  await writeFileAtomic(path, serializeCheckpoint(s));
}

/**
 * Reads and verifies a checkpoint; truncated or corrupted files are rejected with a clear Error.
 * @example const ckpt = await loadCheckpoint('run/ckpt.msgpack'); restoreCheckpoint(ckpt, { model, optimizer, sampler });
 */
export async function loadCheckpoint(path: string): Promise<Checkpoint> {
  const bytes = await readFile(path);
  try {
    return parseCheckpoint(bytes);
  } catch (err) {
    throw new Error(`loadCheckpoint: '${path}' is not a valid checkpoint: ${err instanceof Error ? err.message : String(err)}`);
  }
}
