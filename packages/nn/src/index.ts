export * from './data/index.ts';
export * from './module.ts';
export * from './init.ts';
export * from './layers.ts';
export * from './models/transformer.ts';
export * from './presets.ts';
export * from './losses.ts';
export * from './optim/index.ts';
export {
  checkpointValue, parseCheckpoint, restoreCheckpoint, serializeCheckpoint,
  type Checkpoint, type CheckpointInput, type RestoreTargets, type Resumable,
} from './checkpoint.ts';
export * from './train.ts';
export * from './pretrained/tokenizer.ts';
export { registerSourceResolver } from './pretrained/tokenizer-source.ts';
export type { ModelSource, SourceInput, SourceResolver } from './pretrained/tokenizer-source.ts';
export { closestName, checkOptionNames } from './pretrained/suggest.ts';
