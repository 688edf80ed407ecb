/**
 * Rewrites of gpu.js's generated GLSL (GL modes only).
 *
 * NOTE: with sizes as uniforms (one kernel for every shape), gpu.js's texel
 * addressing divides by a uniform texture width in every fetch:
 * `integerMod(index, w)` and `index / w`. On software rasterizers (Mesa
 * llvmpipe under headless-gl, SwiftShader in Chromium) an integer vector
 * division by a non-constant is scalarized, lane by lane, and a matmul's
 * inner loop does two of them per multiply-add; with constant sizes the
 * compiler turns them into multiplications. Here the same index splits with
 * one float division (vectorized) corrected exactly in integers, so uniform
 * sizes cost about what constant ones did. Output is bit-identical: only how
 * the texel coordinate is found changes.
 */

/** `int w = <expr>;` then gpu.js's st from integer division by w. */
const TEXEL_SPLIT = /( *)int w = ([^;\n]+);\n *vec2 st = vec2\(float\(integerMod\(index, w\)\), float\(index \/ w\)\) \+ 0\.5;/g;

/** gpu.js's channel split of a memory-optimized (4 values per texel) fetch. */
const CHANNEL_SPLIT = /( *)int channel = integerMod\(index, 4\);\n *index = index \/ 4;/g;

/** gpu.js's thread id from the flat fragment index (three integer divisions per fragment). */
const THREAD_ID = /ivec3 indexTo3D\(int idx, ivec3 texDim\) \{[^}]*\}/;

/** q = floor(a / d), r = a - q d, exactly for a >= 0, d > 0 (declares both). */
function splitCode(pad: string, a: string, d: string, q: string, r: string): string {
  return (
    `${pad}int ${q} = int(floor((float(${a}) + 0.5) / float(${d})));\n` +
    `${pad}int ${r} = ${a} - ${q} * ${d};\n` +
    `${pad}if (${r} < 0) { ${q} -= 1; ${r} += ${d}; } else if (${r} >= ${d}) { ${q} += 1; ${r} -= ${d}; }`
  );
}

const THREAD_ID_SOURCE = `ivec3 indexTo3D(int idx, ivec3 texDim) {
${splitCode('  ', 'idx', '(texDim.x * texDim.y)', 'z', 'rem')}
${splitCode('  ', 'rem', 'texDim.x', 'y', 'x')}
  return ivec3(x, y, z);
}`;

/** How many sites a rewrite changed (0 means gpu.js's template changed: slower, still correct). */
export interface PatchResult {
  source: string;
  sites: number;
}

/** The fragment shader with texel and thread addressing done by exact float-reciprocal splits. */
export function patchFragmentShader(source: string): PatchResult {
  let sites = 0;
  let out = source.replace(TEXEL_SPLIT, (_m, pad: string, w: string) => {
    sites++;
    return `${pad}int w = ${w};\n${splitCode(pad, 'index', 'w', 'texY', 'texX')}\n${pad}vec2 st = vec2(float(texX), float(texY)) + 0.5;`;
  });
  out = out.replace(CHANNEL_SPLIT, (_m, pad: string) => {
    sites++;
    return `${splitCode(pad, 'index', '4', 'quad', 'channel')}\n${pad}index = quad;`;
  });
  out = out.replace(THREAD_ID, () => {
    sites++;
    return THREAD_ID_SOURCE;
  });
  return { source: out, sites };
}

/**
 * A kernel written in GLSL: helper functions (which read gpu.js's argument
 * uniforms, `user_<name>` and `user_<name>Size`, and the fragment's packed
 * texel `index`) and the vec4 expression main writes, 4 outputs per texel.
 */
export interface RawGl {
  helpers: string;
  result: string;
}

const MAIN_INDEX = /void main\(void\) \{\n(\s*index = [^;]+;)/;

/** gpu.js's shader with its kernel and main replaced by raw GLSL. */
export function rawFragmentShader(source: string, raw: RawGl): string {
  const at = source.indexOf('void kernel() {');
  const index = MAIN_INDEX.exec(source);
  if (at < 0 || !index) throw new Error('gpu backend: gpu.js fragment shader template not recognised (raw GLSL kernel)');
  const out = source.includes('#version 300 es') ? 'data0' : 'gl_FragData[0]';
  return `${source.slice(0, at)}${raw.helpers}\nvoid main(void) {\n${index[1]}\n  ${out} = ${raw.result};\n}\n`;
}

interface GlKernelLike {
  getFragmentShader(args: unknown): string;
  compiledFragmentShader: string | null;
}

let warned = false;

/**
 * Makes a gpu.js GL kernel instance build its program from the patched
 * fragment shader (built lazily, at gpu.js's first run); warns once when the
 * template matched nothing.
 */
export function patchKernelShader(kernel: unknown, raw?: RawGl): void {
  const k = kernel as Partial<GlKernelLike>;
  if (typeof k.getFragmentShader !== 'function') return;
  const original = k.getFragmentShader;
  k.getFragmentShader = function (this: GlKernelLike, args: unknown): string {
    if (this.compiledFragmentShader !== null) return this.compiledFragmentShader;
    const generated = original.call(this, args);
    const { source, sites } = patchFragmentShader(raw ? rawFragmentShader(generated, raw) : generated);
    if (sites === 0 && !warned) {
      warned = true;
      console.warn('lowrank gpu backend: gpu.js fragment shader template not recognised; texel addressing left unpatched (slower on software GL)');
    }
    this.compiledFragmentShader = source;
    return source;
  };
}
