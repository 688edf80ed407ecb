export * from './data/index.ts';
export * from './module.ts';
export * from './init.ts';
export * from './layers.ts';
export * from './models/transformer.ts';
export * from './presets.ts';
export * from './losses.ts';
export * from './optim/index.ts';
