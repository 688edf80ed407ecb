import type { Module } from '@lowrank/nn';
import type { AdapterFiles, AdapterInput, LoadOptions, SaveOptions } from './io.ts';
import type { PeftModel } from './peft-model.ts';

/**
 * The adapter-file functions PeftModel's methods call. io.ts installs them:
 * io.ts needs PeftModel itself, so peft-model.ts must not import it back.
 */
export interface AdapterIo {
  toFiles(peft: PeftModel, format: 'native' | 'peft', opts: SaveOptions): AdapterFiles;
  saveNative(peft: PeftModel, dir: string, opts: SaveOptions): Promise<string>;
  savePeft(peft: PeftModel, dir: string, opts: SaveOptions): Promise<void>;
  loadInto(model: Module, from: AdapterInput, format: 'native' | 'peft', opts: LoadOptions): Promise<PeftModel>;
}

let installed: AdapterIo | null = null;

export function installAdapterIo(io: AdapterIo): void {
  installed = io;
}

export function adapterIo(): AdapterIo {
  if (!installed) throw new Error("PeftModel: adapter files need '@lowrank/lora' loaded through its entry (io.ts not loaded)");
  return installed;
}
