/**
 * `@lowrank/lora/node`: adapter directories on disk. Importing it installs
 * Node's file system, which the path forms of `peft.saveAdapter(dir)`,
 * `peft.savePretrained(dir)`, `loadAdapter(model, dir)` and
 * `PeftModel.fromPretrained(model, dir)` use.
 */
import '@lowrank/core/node';

export {
  loadAdapter, loadPeftAdapter, saveAdapter, saveNativeFile, savePeftFiles, savePretrained,
} from './io.ts';
