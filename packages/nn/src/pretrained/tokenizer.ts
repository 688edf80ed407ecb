import { Template } from '@huggingface/jinja';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { checkOptionNames } from './generate.ts';
import { openSink, openSource, parseJsonFile as parseJsonBytes, type ModelSource, type SinkInput, type SourceInput } from './source.ts';

/** One message of a chat, as transformers' `apply_chat_template` takes it. */
export interface ChatMessage {
  role: string;
  content: string;
  [field: string]: unknown;
}

export interface EncodeOptions {
  /** Add the template's special tokens (LLaMA's `<s>`, BERT's `[CLS]`...). Default true, as transformers. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Drop special tokens (`<|endoftext|>`, `<s>`, added special tokens) from the text. */
  skipSpecialTokens?: boolean;
  /** transformers' `clean_up_tokenization_spaces`; default from tokenizer_config.json, else false. */
  cleanUpTokenizationSpaces?: boolean;
}

export interface BatchEncodeOptions extends EncodeOptions {
  /** `true`/`'longest'`: pad to the longest row; `'max_length'`: to `maxLength`. Default false. */
  padding?: boolean | 'longest' | 'max_length';
  /** Cut rows longer than this (with `truncation`) and the target of `padding: 'max_length'`. */
  maxLength?: number;
  /** Cut rows to `maxLength` (default: `modelMaxLength` when it is finite). */
  truncation?: boolean;
  /** Where pad ids go; default tokenizer_config.json's `padding_side`, else `'right'`. */
  paddingSide?: 'left' | 'right';
}

/** Ids and mask of a batch, rows of equal length when padded. */
export interface BatchEncoding {
  inputIds: number[][];
  attentionMask: number[][];
}

export interface ChatTemplateOptions {
  /** Append the assistant header so the model writes the reply (transformers' `add_generation_prompt`). */
  addGenerationPrompt?: boolean;
  /** Return ids (default, as transformers) or the rendered text (`false`). */
  tokenize?: boolean;
  /** A template string, or the name of one of the config's named templates. */
  chatTemplate?: string;
  /** Tool (function) schemas handed to the template as `tools`. */
  tools?: readonly Record<string, unknown>[];
  /** Documents handed to the template as `documents` (retrieval-augmented templates). */
  documents?: readonly Record<string, unknown>[];
  /** Any other variables the template reads. */
  templateVars?: Record<string, unknown>;
}

/** The special tokens of a tokenizer (null when the tokenizer has none). */
export interface SpecialTokens {
  bosToken: string | null;
  eosToken: string | null;
  padToken: string | null;
  unkToken: string | null;
}

type Json = Record<string, unknown>;

const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'] as const;

/**
 * A Hugging Face tokenizer (`tokenizer.json` + `tokenizer_config.json`), run by
 * `@huggingface/tokenizers`. Ids are plain `number[]`, as transformers returns lists.
 *
 * @example const tok = await AutoTokenizer.fromPretrained(dir); tok.decode(tok.encode('Hello')) // 'Hello'
 */
export class PreTrainedTokenizer implements SpecialTokens {
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  readonly padToken: string | null;
  readonly unkToken: string | null;
  /** Every id: model vocabulary plus added tokens. */
  readonly vocabSize: number;
  /** Longest input the model takes (tokenizer_config.json's `model_max_length`), else Infinity. */
  readonly modelMaxLength: number;
  readonly paddingSide: 'left' | 'right';
  /** The default chat template (tokenizer_config.json's `chat_template`), or null. */
  readonly chatTemplate: string | null;
  /** Named chat templates (a `chat_template` list of `{ name, template }`). */
  readonly chatTemplates: ReadonlyMap<string, string>;
  /** The files it was made from (bytes as read), for saving it beside a model. */
  readonly files: ReadonlyMap<string, Uint8Array>;
  private readonly hf: HfTokenizer;
  private readonly specialIds: ReadonlySet<number>;
  private readonly cleanUpSpaces: boolean;

  /**
   * From the parsed files. `modelConfig` (config.json) supplies bos/eos ids when the
   * tokenizer files name none, as GPT-2's do.
   *
   * @example PreTrainedTokenizer.fromJSON(tokenizerJson, { eos_token: '<|endoftext|>' })
   */
  static fromJSON(tokenizerJson: Json, tokenizerConfig: Json = {}, modelConfig: Json = {}): PreTrainedTokenizer {
    return new PreTrainedTokenizer(tokenizerJson, tokenizerConfig, modelConfig, new Map());
  }

  private constructor(tokenizerJson: Json, config: Json, modelConfig: Json, files: ReadonlyMap<string, Uint8Array>) {
    const cleanUp = config.clean_up_tokenization_spaces;
    this.cleanUpSpaces = cleanUp === true;
    // NOTE: @huggingface/tokenizers defaults clean_up_tokenization_spaces to true; transformers
    // has defaulted it to false since 4.45, and a true default breaks decode(encode(x)) == x.
    this.hf = new HfTokenizer(tokenizerJson, { ...config, clean_up_tokenization_spaces: this.cleanUpSpaces });
    this.files = files;
    this.vocabSize = this.hf.get_vocab(true).size;
    const specialIds = new Set<number>();
    for (const [id, token] of this.hf.get_added_tokens_decoder()) if (token.special) specialIds.add(id);
    this.bosToken = this.specialToken(config, 'bos_token', modelConfig.bos_token_id);
    this.eosToken = this.specialToken(config, 'eos_token', modelConfig.eos_token_id);
    this.padToken = this.specialToken(config, 'pad_token', modelConfig.pad_token_id);
    this.unkToken = this.specialToken(config, 'unk_token', undefined);
    for (const t of [this.bosToken, this.eosToken, this.padToken, this.unkToken]) {
      const id = t === null ? undefined : this.hf.token_to_id(t);
      if (id !== undefined) specialIds.add(id);
    }
    this.specialIds = specialIds;
    const maxLen = config.model_max_length;
    // transformers writes a huge sentinel (1e30) for "no limit".
    this.modelMaxLength = typeof maxLen === 'number' && maxLen > 0 && maxLen < 1e18 ? maxLen : Infinity;
    this.paddingSide = config.padding_side === 'left' ? 'left' : 'right';
    const { main, named } = parseChatTemplates(config.chat_template);
    this.chatTemplate = main;
    this.chatTemplates = named;
  }

  /** @internal Used by `AutoTokenizer.fromPretrained`. */
  static fromFiles(files: ReadonlyMap<string, Uint8Array>, where: string): PreTrainedTokenizer {
    const tokenizerJson = readJson(files, 'tokenizer.json', where);
    if (tokenizerJson === null) throw missingTokenizerError(files, where);
    const config = readJson(files, 'tokenizer_config.json', where) ?? {};
    const specialMap = readJson(files, 'special_tokens_map.json', where) ?? {};
    const modelConfig = readJson(files, 'config.json', where) ?? {};
    const saved = new Map([...files].filter(([name]) => (TOKENIZER_FILES as readonly string[]).includes(name)));
    try {
      return new PreTrainedTokenizer(tokenizerJson, { ...specialMap, ...config }, modelConfig, saved);
    } catch (err) {
      throw new Error(`AutoTokenizer.fromPretrained: ${where}: tokenizer.json could not be loaded: ${(err as Error).message}`);
    }
  }

  get bosTokenId(): number | null {
    return this.idOf(this.bosToken);
  }

  get eosTokenId(): number | null {
    return this.idOf(this.eosToken);
  }

  /** The pad id; falls back to nothing (null): set `padToken` in tokenizer_config.json or pass ids yourself. */
  get padTokenId(): number | null {
    return this.idOf(this.padToken);
  }

  get unkTokenId(): number | null {
    return this.idOf(this.unkToken);
  }

  /** Ids of every special token (added special tokens and bos/eos/pad/unk). */
  get allSpecialIds(): number[] {
    return [...this.specialIds].sort((a, b) => a - b);
  }

  /**
   * Text -> ids, special tokens of the post-processor template included by default.
   *
   * @example tok.encode('Hello world') // [15496, 995] for GPT-2
   */
  encode(text: string, options: EncodeOptions = {}): number[] {
    checkOptionNames('PreTrainedTokenizer.encode', options, ['addSpecialTokens']);
    if (typeof text !== 'string') throw new Error(`PreTrainedTokenizer.encode: expected a string, got ${typeof text}`);
    return this.hf.encode(text, { add_special_tokens: options.addSpecialTokens ?? true }).ids;
  }

  /** Text -> token strings (no special tokens added). @example tok.tokenize('Hello world') // ['Hello', 'Ġworld'] */
  tokenize(text: string): string[] {
    return this.hf.tokenize(text);
  }

  /**
   * Ids -> text. An id outside the vocabulary is an error naming it.
   *
   * @example tok.decode([15496, 995]) // 'Hello world'
   */
  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    checkOptionNames('PreTrainedTokenizer.decode', options, ['skipSpecialTokens', 'cleanUpTokenizationSpaces']);
    const list = Array.from(ids);
    list.forEach((id, i) => {
      if (!(Number.isInteger(id) && id >= 0 && this.hf.id_to_token(id) !== undefined)) {
        throw new Error(`PreTrainedTokenizer.decode: token id ${id} at position ${i} is not in the vocabulary of ${this.vocabSize}`);
      }
    });
    const kept = options.skipSpecialTokens ? list.filter((id) => !this.specialIds.has(id)) : list;
    if (kept.length === 0) return '';
    return this.hf.decode(kept, {
      skip_special_tokens: false,
      clean_up_tokenization_spaces: options.cleanUpTokenizationSpaces ?? this.cleanUpSpaces,
    });
  }

  /**
   * Many texts -> ids and attention masks, optionally truncated and padded to one length.
   *
   * @example tok.encodeBatch(['a b', 'a'], { padding: true }).attentionMask // [[1, 1], [1, 0]]
   */
  encodeBatch(texts: readonly string[], options: BatchEncodeOptions = {}): BatchEncoding {
    checkOptionNames('PreTrainedTokenizer.encodeBatch', options, [
      'addSpecialTokens',
      'padding',
      'maxLength',
      'truncation',
      'paddingSide',
    ]);
    const maxLength = options.maxLength ?? (Number.isFinite(this.modelMaxLength) ? this.modelMaxLength : undefined);
    if (maxLength !== undefined && !(Number.isInteger(maxLength) && maxLength >= 1)) {
      throw new Error(`PreTrainedTokenizer.encodeBatch: maxLength must be a positive integer, got ${maxLength}`);
    }
    let rows = texts.map((t) => this.encode(t, { addSpecialTokens: options.addSpecialTokens }));
    if (options.truncation && maxLength !== undefined) rows = rows.map((r) => r.slice(0, maxLength));
    const padding = options.padding ?? false;
    if (padding === false) return { inputIds: rows, attentionMask: rows.map((r) => r.map(() => 1)) };
    const target = padding === 'max_length' ? maxLength : Math.max(0, ...rows.map((r) => r.length));
    if (target === undefined) {
      throw new Error("PreTrainedTokenizer.encodeBatch: padding 'max_length' needs maxLength (or a model_max_length)");
    }
    const padId = this.padTokenId;
    if (padId === null) {
      throw new Error(
        'PreTrainedTokenizer.encodeBatch: padding needs a pad token and this tokenizer has none ' +
          '(transformers users set tokenizer.pad_token = tokenizer.eos_token; here: tok.withPadToken(tok.eosToken))',
      );
    }
    const left = (options.paddingSide ?? this.paddingSide) === 'left';
    const inputIds: number[][] = [];
    const attentionMask: number[][] = [];
    for (const row of rows) {
      const n = Math.max(0, target - row.length);
      const pad = new Array<number>(n).fill(padId);
      const ones = new Array<number>(row.length).fill(1);
      const zeros = new Array<number>(n).fill(0);
      inputIds.push(left ? [...pad, ...row] : [...row, ...pad]);
      attentionMask.push(left ? [...zeros, ...ones] : [...ones, ...zeros]);
    }
    return { inputIds, attentionMask };
  }

  /** @example tok.decodeBatch([[15496], [995]]) // ['Hello', ' world'] */
  decodeBatch(rows: readonly ArrayLike<number>[], options: DecodeOptions = {}): string[] {
    return rows.map((r) => this.decode(r, options));
  }

  /** @example tok.tokenToId('<|endoftext|>') // 50256 */
  tokenToId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }

  /** @example tok.idToToken(50256) // '<|endoftext|>' */
  idToToken(id: number): string | undefined {
    return this.hf.id_to_token(id);
  }

  /**
   * The same tokenizer with another pad token (an existing token such as the eos token).
   *
   * @example const padded = tok.withPadToken(tok.eosToken)
   */
  withPadToken(token: string | null): PreTrainedTokenizer {
    if (token !== null && this.hf.token_to_id(token) === undefined) {
      throw new Error(`PreTrainedTokenizer.withPadToken: ${JSON.stringify(token)} is not a token of this tokenizer`);
    }
    const copy = Object.create(PreTrainedTokenizer.prototype) as PreTrainedTokenizer;
    Object.assign(copy, this, { padToken: token });
    return copy;
  }

  /**
   * Writes the tokenizer files it was loaded from (tokenizer.json, tokenizer_config.json,
   * special_tokens_map.json) to a directory or sink, as transformers' `save_pretrained`; a pad
   * token set with `withPadToken` is written into tokenizer_config.json. Returns the names.
   *
   * @example await tok.savePretrained('out/merged')
   */
  async savePretrained(out: SinkInput): Promise<string[]> {
    if (this.files.size === 0) throw new Error('PreTrainedTokenizer.savePretrained: this tokenizer was made from objects, not files; nothing to write');
    const sink = await openSink(out);
    const names: string[] = [];
    try {
      for (const [name, bytes] of this.files) {
        await sink.write(name, name === 'tokenizer_config.json' ? this.configBytes(bytes) : bytes);
        names.push(name);
      }
      await sink.commit?.();
    } catch (err) {
      await sink.abort?.();
      throw err;
    }
    return names.sort();
  }

  private configBytes(bytes: Uint8Array): Uint8Array {
    const config = JSON.parse(new TextDecoder().decode(bytes)) as Json;
    const current = typeof config.pad_token === 'string' ? config.pad_token : ((config.pad_token as Json | undefined)?.content ?? null);
    if (current === this.padToken) return bytes;
    return new TextEncoder().encode(`${JSON.stringify({ ...config, pad_token: this.padToken }, null, 2)}\n`);
  }

  /**
   * Renders `messages` with the chat template (tokenizer_config.json's `chat_template`) through
   * `@huggingface/jinja`, then tokenizes it (no extra special tokens: the template writes them).
   *
   * @example tok.applyChatTemplate([{ role: 'user', content: 'Hi' }], { addGenerationPrompt: true, tokenize: false })
   */
  applyChatTemplate(messages: readonly ChatMessage[], options: ChatTemplateOptions & { tokenize: false }): string;
  applyChatTemplate(messages: readonly ChatMessage[], options?: ChatTemplateOptions & { tokenize?: true }): number[];
  applyChatTemplate(messages: readonly ChatMessage[], options?: ChatTemplateOptions): string | number[];
  applyChatTemplate(messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): string | number[] {
    checkOptionNames('PreTrainedTokenizer.applyChatTemplate', options, [
      'addGenerationPrompt',
      'tokenize',
      'chatTemplate',
      'tools',
      'documents',
      'templateVars',
    ]);
    messages.forEach((m, i) => {
      if (typeof m?.role !== 'string') {
        throw new Error(`PreTrainedTokenizer.applyChatTemplate: message ${i} has no string 'role'`);
      }
    });
    const source = this.pickTemplate(options.chatTemplate);
    let template: Template;
    try {
      template = new Template(source);
    } catch (err) {
      throw new Error(`PreTrainedTokenizer.applyChatTemplate: the chat template does not parse: ${(err as Error).message}`);
    }
    const text = template.render({
      ...options.templateVars,
      messages,
      add_generation_prompt: options.addGenerationPrompt ?? false,
      tools: options.tools,
      documents: options.documents,
      bos_token: this.bosToken ?? '',
      eos_token: this.eosToken ?? '',
      pad_token: this.padToken ?? '',
      unk_token: this.unkToken ?? '',
    });
    return options.tokenize === false ? text : this.encode(text, { addSpecialTokens: false });
  }

  private pickTemplate(choice: string | undefined): string {
    if (choice !== undefined) return this.chatTemplates.get(choice) ?? choice;
    if (this.chatTemplate !== null) return this.chatTemplate;
    throw new Error(
      'PreTrainedTokenizer.applyChatTemplate: this tokenizer has no chat_template in tokenizer_config.json; ' +
        'pass one as { chatTemplate: "..." }',
    );
  }

  private idOf(token: string | null): number | null {
    return token === null ? null : (this.hf.token_to_id(token) ?? null);
  }

  private specialToken(config: Json, key: string, fallbackId: unknown): string | null {
    const value = config[key];
    if (typeof value === 'string') return value;
    if (typeof value === 'object' && value !== null && typeof (value as Json).content === 'string') {
      return (value as Json).content as string;
    }
    if (value === undefined && typeof fallbackId === 'number') return this.hf.id_to_token(fallbackId) ?? null;
    return null;
  }
}

/**
 * Loads tokenizers by the names transformers users know.
 *
 * @example const tok = await AutoTokenizer.fromPretrained('path/to/model')
 */
export class AutoTokenizer {
  /**
   * `source`: anything the model loader takes (a directory, a base URL, an in-memory
   * `{ name: bytes }` map, a Hub id once the Node resolver is registered, or a `ModelSource`).
   * Reads `tokenizer.json` (required), `tokenizer_config.json`, `special_tokens_map.json`
   * and `config.json` (for bos/eos ids when the tokenizer files name none).
   *
   * @example const tok = await AutoTokenizer.fromPretrained(new Map([['tokenizer.json', bytes]]))
   */
  static async fromPretrained(source: SourceInput): Promise<PreTrainedTokenizer> {
    const src: ModelSource = await openSource(source);
    const files = new Map<string, Uint8Array>();
    for (const name of [...TOKENIZER_FILES, 'config.json', 'vocab.json', 'merges.txt', 'tokenizer.model']) {
      // Only probe the legacy files when tokenizer.json is missing (for the error message).
      if (['vocab.json', 'merges.txt', 'tokenizer.model'].includes(name) && files.has('tokenizer.json')) continue;
      const bytes = await src.read(name);
      if (bytes !== null) files.set(name, bytes);
    }
    return PreTrainedTokenizer.fromFiles(files, src.describe);
  }
}

function readJson(files: ReadonlyMap<string, Uint8Array>, name: string, where: string): Json | null {
  const bytes = files.get(name);
  if (bytes === undefined) return null;
  let value: unknown;
  try {
    value = parseJsonBytes(bytes, `${where}/${name}`);
  } catch (err) {
    throw new Error(`AutoTokenizer.fromPretrained: ${(err as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new Error(`AutoTokenizer.fromPretrained: ${where}: ${name} must hold a JSON object`);
  }
  return value as Json;
}

function missingTokenizerError(files: ReadonlyMap<string, Uint8Array>, where: string): Error {
  const legacy = ['vocab.json', 'merges.txt', 'tokenizer.model'].filter((n) => files.has(n));
  const hint = legacy.length
    ? ` (found ${legacy.join(', ')}: the slow-tokenizer files; convert them once in Python with ` +
      'AutoTokenizer.from_pretrained(path).save_pretrained(path), which writes tokenizer.json)'
    : '';
  return new Error(`AutoTokenizer.fromPretrained: ${where}: tokenizer.json not found (expected a Hugging Face fast-tokenizer file)${hint}`);
}

function parseChatTemplates(value: unknown): { main: string | null; named: Map<string, string> } {
  const named = new Map<string, string>();
  if (typeof value === 'string') return { main: value, named };
  if (Array.isArray(value)) {
    for (const entry of value) {
      const e = entry as Json;
      if (typeof e?.name === 'string' && typeof e.template === 'string') named.set(e.name, e.template);
    }
    return { main: named.get('default') ?? null, named };
  }
  return { main: null, named };
}
