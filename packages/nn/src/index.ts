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
export * from './pretrained/index.ts';
