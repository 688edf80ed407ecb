export * from './config.ts';
export * from './layer.ts';
export * from './tuner.ts';
export * from './peft-model.ts';
export * from './peft-format.ts';
export * from './io.ts';
export * from './accounting.ts';
