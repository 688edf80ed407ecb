/**
 * Helpers that write gpu.js kernel source. Sizes, strides and offsets are
 * not baked in: each becomes an integer uniform argument (`n0`, `n1`, ...)
 * and each scalar parameter a float uniform (`f0`, ...), so one compiled
 * kernel serves every shape with the same structure (a new sequence length
 * reuses it). Only structural facts (rank, which strides are 0 or 1, which
 * axes broadcast) shape the source.
 *
 * NOTE: gpu.js types a declared variable as a float even when it holds an
 * integer, and a float is exact only below 2^24. So variables hold small
 * coordinates only, and flat offsets (which may exceed 2^24, e.g. in a
 * 50257 x 768 embedding) are built by `lin`: in GL modes a native GLSL
 * `int linN(...)` (gpu.js otherwise does index arithmetic in float), in
 * webasm/cpu i32 arithmetic over `v | 0`.
 */
export class CodeGen {
  private n = 0;
  /** Values of the integer uniforms n0, n1, ... in order. */
  readonly ints: number[] = [];
  /** Values of the float uniforms f0, f1, ... in order. */
  readonly floats: number[] = [];

  constructor(private readonly intCast: 'floor' | 'or') {}

  /** An integer size, stride or offset as a uniform the kernel reads: `for (j < ${g.d(cols)})`. */
  d(v: number): string {
    if (!Number.isInteger(v) || Math.abs(v) > 0x7fffffff) throw new Error(`gpu backend: ${v} is not a 32-bit integer size`);
    this.ints.push(v);
    return `n${this.ints.length - 1}`;
  }

  /** A float parameter as a uniform. */
  f(v: number): string {
    this.floats.push(v);
    return `f${this.floats.length - 1}`;
  }

  /** Names of the uniform arguments, after the buffer arguments. */
  uniformNames(): string[] {
    return [...this.ints.map((_, i) => `n${i}`), ...this.floats.map((_, i) => `f${i}`)];
  }

  /** A small integer value (below 2^24) as an integer expression. */
  int(v: string): string {
    return this.intCast === 'floor' ? `Math.floor(${v})` : `(${v} | 0)`;
  }

  fresh(prefix: string): string {
    return `${prefix}${this.n++}`;
  }

  /**
   * off + sum(term_k * stride_k), exactly in 32-bit integers; terms are
   * variables, loop counters or this.thread.x. `uniformOff`: the offset is a
   * uniform even when 0, so callers that vary it share one kernel.
   */
  lin(terms: readonly (readonly [string, number])[], off = 0, uniformOff = false): string {
    const live = terms.filter(([, st]) => st !== 0);
    const o = off === 0 && !uniformOff ? '0' : this.d(off);
    if (this.intCast === 'floor') {
      if (live.length === 0) return o;
      if (live.length > MAX_LIN) throw new Error(`gpu backend: index expression over ${live.length} axes (max ${MAX_LIN})`);
      return `lin${live.length}(${live.map(([v, st]) => `${v}, ${this.d(st)}`).join(', ')}, ${o})`;
    }
    const parts = live.map(([v, st]) => (st === 1 ? `(${v} | 0)` : `(${v} | 0) * ${this.d(st)}`));
    if (off !== 0 || uniformOff || parts.length === 0) parts.push(o);
    return parts.join(' + ');
  }

  /**
   * Declares q = floor(a / d) and r = a mod d for an integer term `a` (>= 0)
   * and a literal d > 0, exactly: a float estimate corrected once.
   */
  divmod(q: string, r: string, a: string, d: number): string {
    if (d === 1) return `let ${q} = ${a};\nlet ${r} = 0;\n`;
    const dn = this.d(d);
    const rem = this.lin([[q, -d], [a, 1]]);
    return (
      `let ${q} = Math.floor((${a} + 0.5) / ${dn});\n` +
      `if (${rem} < 0) { ${q} = ${q} - 1; }\n` +
      `if (${rem} >= ${dn}) { ${q} = ${q} + 1; }\n` +
      `let ${r} = ${rem};\n`
    );
  }

  /**
   * Decomposes the integer term `a` into row-major coordinates over `shape`;
   * returns the code and the coordinate variable names.
   */
  coords(a: string, shape: readonly number[]): { code: string; c: string[] } {
    const rank = shape.length;
    const c = new Array<string>(rank);
    let code = '';
    let cur = a;
    for (let d = rank - 1; d >= 1; d--) {
      const q = this.fresh('q');
      c[d] = this.fresh('c');
      code += this.divmod(q, c[d], cur, shape[d]);
      cur = q;
    }
    if (rank > 0) {
      c[0] = this.fresh('c');
      code += `let ${c[0]} = ${cur};\n`;
    }
    return { code, c };
  }

  /** offset + sum(c_k * strides_k) as an integer expression. */
  offset(c: readonly string[], strides: readonly number[], offset = 0): string {
    return this.lin(c.map((v, k) => [v, strides[k]] as const), offset);
  }
}

/** Most terms one `lin` call takes. */
export const MAX_LIN = 10;

/** GLSL sources of lin1..linN: off + sum(a_k * s_k) in int. */
export function linNatives(): { name: string; source: string; argumentTypes: Record<string, string> }[] {
  const out = [];
  for (let n = 1; n <= MAX_LIN; n++) {
    const names = Array.from({ length: n }, (_, k) => [`a${k}`, `s${k}`]).flat();
    const params = [...names, 'off'];
    const body = Array.from({ length: n }, (_, k) => `a${k} * s${k}`).join(' + ');
    out.push({
      name: `lin${n}`,
      source: `int lin${n}(${params.map((p) => `int ${p}`).join(', ')}) { return ${body} + off; }`,
      argumentTypes: Object.fromEntries(params.map((p) => [p, 'Integer'])),
    });
  }
  return out;
}

/** A float literal gpu.js reads as a float (never an integer). */
export function flt(v: number): string {
  if (!Number.isFinite(v)) throw new Error(`gpu backend: cannot inline non-finite constant ${v}`);
  const s = String(v);
  return /[.e]/.test(s) ? s : `${s}.0`;
}

/** Stable tanh(u) into a fresh variable; returns [code, name]. */
export function tanhCode(g: CodeGen, u: string): [string, string] {
  const e = g.fresh('e');
  const t = g.fresh('t');
  return [
    `let ${e} = Math.exp(-2 * Math.abs(${u}));\nlet ${t} = (1 - ${e}) / (1 + ${e});\nif (${u} < 0) { ${t} = -${t}; }\n`,
    t,
  ];
}

/** Stable sigmoid(x) into a fresh variable. */
export function sigmoidCode(g: CodeGen, x: string): [string, string] {
  const s = g.fresh('s');
  const e = g.fresh('e');
  return [
    `let ${e} = Math.exp(-Math.abs(${x}));\nlet ${s} = 1 / (1 + ${e});\nif (${x} < 0) { ${s} = ${e} / (1 + ${e}); }\n`,
    s,
  ];
}

/** JS-semantics pow(x, e) (negative bases with integer exponents) into a fresh variable. */
export function powCode(g: CodeGen, x: string, e: string): [string, string] {
  const y = g.fresh('p');
  const h = g.fresh('h');
  return [
    `let ${y} = 0;\n` +
      `if (${x} > 0) { ${y} = Math.pow(${x}, ${e}); }\n` +
      // NOTE: 1 / |x| (x is 0 here), not 1 / 0: WGSL rejects a constant expression that overflows.
      `else if (${x} == 0) { if (${e} > 0) { ${y} = 0; } else if (${e} == 0) { ${y} = 1; } else { ${y} = 1 / Math.abs(${x}); } }\n` +
      `else if (Math.floor(${e}) == ${e}) {\n` +
      `  ${y} = Math.pow(-${x}, ${e});\n` +
      `  let ${h} = ${e} * 0.5;\n` +
      `  if (Math.floor(${h}) != ${h}) { ${y} = -${y}; }\n` +
      `} else { ${y} = Math.sqrt(-1 - ${x} * ${x}); }\n`,
    y,
  ];
}

/** A complete kernel source: `function (args) { body }`. */
export function kernelSource(args: readonly string[], body: string): string {
  return `function (${args.join(', ')}) {\n${body}}`;
}
