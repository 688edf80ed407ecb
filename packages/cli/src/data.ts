/** Training text for `lowrank finetune`: a .txt file, or .jsonl records (text, prompt/completion, or chat messages). */
import { readFile } from 'node:fs/promises';
import type { ChatMessage, PreTrainedTokenizer } from '@lowrank/nn';
import { UsageError } from './args.ts';

/**
 * The documents of a data file. `.txt`: the whole file is one document. `.jsonl`: one JSON
 * object per line with `text`, or `prompt` + `completion`, or `messages` (rendered by the
 * tokenizer's chat template when it has one).
 *
 * @example await readDocuments('train.jsonl', tok) // ['first record', 'second record']
 */
export async function readDocuments(file: string, tok: PreTrainedTokenizer): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UsageError(`lowrank finetune: --data ${file}: ${code === 'ENOENT' ? 'no such file' : (err as Error).message} (expected a .txt or .jsonl file of training text)`);
  }
  if (file.endsWith('.jsonl')) return jsonlDocuments(file, text, tok);
  if (file.endsWith('.json')) {
    throw new UsageError(`lowrank finetune: --data ${file}: use JSON Lines (.jsonl, one record per line) or plain text (.txt)`);
  }
  if (text.trim() === '') throw new UsageError(`lowrank finetune: --data ${file} is empty`);
  return [text];
}

function jsonlDocuments(file: string, text: string, tok: PreTrainedTokenizer): string[] {
  const docs: string[] = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    const where = `${file}:${i + 1}`;
    let rec: unknown;
    try {
      rec = JSON.parse(line);
    } catch (err) {
      throw new UsageError(`lowrank finetune: ${where}: not valid JSON (${(err as Error).message})`);
    }
    docs.push(recordText(rec, where, tok));
  });
  if (docs.length === 0) throw new UsageError(`lowrank finetune: --data ${file} has no records`);
  return docs;
}

function recordText(rec: unknown, where: string, tok: PreTrainedTokenizer): string {
  const r = (typeof rec === 'object' && rec !== null ? rec : {}) as Record<string, unknown>;
  if (typeof r.text === 'string') return r.text;
  if (typeof r.prompt === 'string' && typeof r.completion === 'string') return r.prompt + r.completion;
  if (Array.isArray(r.messages)) {
    const messages = r.messages as ChatMessage[];
    if (!messages.every((m) => typeof m?.role === 'string' && typeof m?.content === 'string')) {
      throw new UsageError(`lowrank finetune: ${where}: every message needs string "role" and "content"`);
    }
    if (tok.chatTemplate !== null) return tok.applyChatTemplate(messages, { tokenize: false });
    return messages.map((m) => `${m.role}: ${m.content}`).join('\n');
  }
  throw new UsageError(`lowrank finetune: ${where}: expected an object with "text", "prompt" + "completion", or "messages"`);
}

/**
 * All documents as one id stream, each followed by the eos id (when the tokenizer has one),
 * checked against the model's vocabulary.
 *
 * @example tokenizeDocuments(['a', 'b'], tok, 96).length
 */
export function tokenizeDocuments(docs: readonly string[], tok: PreTrainedTokenizer, vocabSize: number): Int32Array {
  const eos = tok.eosTokenId;
  const parts: number[][] = docs.map((d) => {
    const ids = tok.encode(d, { addSpecialTokens: true });
    if (eos !== null) ids.push(eos);
    return ids;
  });
  const total = parts.reduce((n, p) => n + p.length, 0);
  const ids = new Int32Array(total);
  let at = 0;
  for (const p of parts) {
    ids.set(p, at);
    at += p.length;
  }
  const bad = ids.find((id) => id >= vocabSize);
  if (bad !== undefined) {
    throw new UsageError(`lowrank finetune: the tokenizer produced id ${bad}, outside the model's vocab_size ${vocabSize}; the tokenizer does not belong to this model`);
  }
  return ids;
}
