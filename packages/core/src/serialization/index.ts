export type { RawDtype, RawTensor } from './raw.ts';
export { isRawTensor } from './raw.ts';
export {
  SAFETENSORS_MAX_HEADER_BYTES,
  decodeSafetensors,
  encodeSafetensors,
  type DecodeSafetensorsOptions,
  type SafetensorsContents,
} from './safetensors.ts';
export { CHECKPOINT_FORMAT, CHECKPOINT_VERSION, decodeCheckpoint, encodeCheckpoint, type CheckpointValue } from './checkpoint.ts';
