/**
 * Helpers that write gpu.js kernel source. Kernels are generated per
 * (kernel, shapes) with shapes baked in as integer literals, so each source
 * string is its own cache key.
 *
 * NOTE: gpu.js types a declared variable as a float even when it holds an
 * integer, and a float is exact only below 2^24. So variables hold small
 * coordinates only; flat offsets (which may exceed 2^24, e.g. a 50257 x 768
 * embedding) are written inline as integer expressions over `int(v)`, which
 * the mode-specific cast makes a real 32-bit integer.
 */
export class CodeGen {
  private n = 0;

  /** `int(v)`: Math.floor in GL modes (GLSL int), `| 0` in webasm/cpu (i32). */
  constructor(private readonly intCast: 'floor' | 'or') {}

  int(v: string): string {
    return this.intCast === 'floor' ? `Math.floor(${v})` : `(${v} | 0)`;
  }

  fresh(prefix: string): string {
    return `${prefix}${this.n++}`;
  }

  /**
   * Declares q = floor(a / d) and r = a mod d for an integer expression `a`
   * (>= 0) and a literal d > 0, exactly: a float estimate corrected once.
   */
  divmod(q: string, r: string, a: string, d: number): string {
    if (d === 1) return `let ${q} = ${a};\nlet ${r} = 0;\n`;
    const rem = `(${a} - ${this.int(q)} * ${d})`;
    return (
      `let ${q} = Math.floor((${a} + 0.5) / ${d});\n` +
      `if (${rem} < 0) { ${q} = ${q} - 1; }\n` +
      `if (${rem} >= ${d}) { ${q} = ${q} + 1; }\n` +
      `let ${r} = ${rem};\n`
    );
  }

  /**
   * Decomposes the integer expression `a` into row-major coordinates over
   * `shape`; returns the code and the coordinate variable names.
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
      cur = this.int(q);
    }
    if (rank > 0) {
      c[0] = this.fresh('c');
      code += `let ${c[0]} = ${cur};\n`;
    }
    return { code, c };
  }

  /** offset + sum(c_k * strides_k) as an integer expression. */
  offset(c: readonly string[], strides: readonly number[], offset = 0): string {
    const terms: string[] = [];
    if (offset !== 0) terms.push(String(offset));
    c.forEach((v, k) => {
      const s = strides[k];
      if (s === 0) return;
      terms.push(s === 1 ? this.int(v) : `${this.int(v)} * ${s}`);
    });
    return terms.length === 0 ? '0' : terms.join(' + ');
  }
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
      `else if (${x} == 0) { if (${e} > 0) { ${y} = 0; } else if (${e} == 0) { ${y} = 1; } else { ${y} = 1 / 0; } }\n` +
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
