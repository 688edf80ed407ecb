// Issue 10a's source.ts has landed: models and tokenizers share its one resolver registry
// (directories from @lowrank/nn/node, Hub ids, URLs, file maps). Importers may switch to ./source.ts.
export { openSource, registerSourceResolver, type ModelSource, type SourceInput, type SourceResolver } from './source.ts';
