export { BROWN_GENRES, detokenizeBrownFile, selectBrownFiles } from './brown.ts';
export type { BrownGenre, BrownText, LoadBrownOptions } from './brown.ts';
export { BpeTokenizer, CharTokenizer } from './tokenizers.ts';
export type { BpeTokenizerJSON, CharTokenizerJSON, Tokenizer, UnknownCharPolicy } from './tokenizers.ts';
export { BatchSampler, Xoshiro128, randomInt, sampleBatch, splitTrainVal } from './batches.ts';
export type { Batch, BatchOptions, BatchSamplerOptions, RandomSource, StatefulRandomSource } from './batches.ts';
