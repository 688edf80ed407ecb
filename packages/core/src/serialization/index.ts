export type { RawDtype, RawTensor } from './raw.ts';
export { isRawTensor } from './raw.ts';
export {
  SAFETENSORS_MAX_HEADER_BYTES,
  decodeSafetensors,
  encodeSafetensors,
  f16ToF32Bits,
  parseSafetensorsHeader,
  safetensorsHeaderLength,
  type DecodeSafetensorsOptions,
  type SafetensorsContents,
  type SafetensorsEntry,
  type SafetensorsHeader,
} from './safetensors.ts';
export { CHECKPOINT_FORMAT, CHECKPOINT_VERSION, decodeCheckpoint, encodeCheckpoint, type CheckpointValue } from './checkpoint.ts';
