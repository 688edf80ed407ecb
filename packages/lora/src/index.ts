export * from './config.ts';
export * from './layer.ts';
export * from './tuner.ts';
export * from './peft-model.ts';
export * from './peft-format.ts';
export {
  ADAPTER_FILE, PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE, adapterToFiles, encodeNativeAdapter, encodePeftAdapter,
  loadAdapter, loadAdapterInto, loadPeftAdapter,
  type AdapterFileSource, type AdapterFiles, type LoadOptions, type SaveOptions,
} from './io.ts';
export * from './accounting.ts';
export * from './load.ts';
export * from './pattern.ts';
export * from './targets.ts';
