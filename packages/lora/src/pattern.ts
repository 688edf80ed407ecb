/**
 * Module-name patterns from configs (`target_modules`, `rank_pattern` and `alpha_pattern`
 * keys) matched with Python's `re.fullmatch` semantics, in time linear in the name:
 * the pattern is compiled to a Thompson NFA and simulated state-set by state-set, so a
 * hostile pattern such as `(.*)*x` cannot backtrack catastrophically (RegExp can).
 * Supported: literals, `.`, classes `[a-z_]` / `[^.]`, `\d \w \s` (and negations), escapes,
 * groups `( )`, `(?: )`, `(?P<name> )`, alternation, `* + ? {n} {n,} {n,m}` (lazy forms too),
 * anchors `^ $ \A \Z`. Backreferences, lookaround and inline flags are errors.
 */

type CharTest = (c: string) => boolean;

type Node =
  | { t: 'char'; test: CharTest }
  | { t: 'seq'; items: Node[] }
  | { t: 'alt'; options: Node[] }
  | { t: 'rep'; node: Node; min: number; max: number }
  | { t: 'assert'; at: 'start' | 'end' };

type State =
  | { k: 'char'; test: CharTest; out: number }
  | { k: 'split'; a: number; b: number }
  | { k: 'assert'; at: 'start' | 'end'; out: number }
  | { k: 'match' };

/** Longest accepted pattern source. */
export const MAX_PATTERN_LENGTH = 1000;
/** Most NFA states one pattern may compile to (bounds the matching cost per character). */
export const MAX_PATTERN_STATES = 4000;
const MAX_REPEAT = 1000;

/** A compiled module-name pattern; `test(name)` is a full match. */
export interface NamePattern {
  readonly source: string;
  test(name: string): boolean;
}

const isDigit: CharTest = (c) => c >= '0' && c <= '9';
const isWord: CharTest = (c) => /^[A-Za-z0-9_]$/.test(c);
const isSpace: CharTest = (c) => c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f' || c === '\v';
const not = (f: CharTest): CharTest => (c) => !f(c);
const CONTROL: Readonly<Record<string, string>> = { n: '\n', t: '\t', r: '\r', f: '\f', v: '\v', a: '\x07' };

class Parser {
  private i = 0;

  constructor(private readonly src: string, private readonly fail: (why: string) => never) {}

  parse(): Node {
    const node = this.alternation();
    if (this.i < this.src.length) this.fail(`unbalanced ')' at position ${this.i}`);
    return node;
  }

  private peek(): string | undefined {
    return this.src[this.i];
  }

  private alternation(): Node {
    const options = [this.sequence()];
    while (this.peek() === '|') {
      this.i++;
      options.push(this.sequence());
    }
    return options.length === 1 ? options[0] : { t: 'alt', options };
  }

  private sequence(): Node {
    const items: Node[] = [];
    for (let c = this.peek(); c !== undefined && c !== '|' && c !== ')'; c = this.peek()) {
      const atom = this.atom();
      items.push(this.quantified(atom));
    }
    return items.length === 1 ? items[0] : { t: 'seq', items };
  }

  private quantified(atom: Node): Node {
    let node = atom;
    for (;;) {
      const q = this.quantifier();
      if (!q) return node;
      if (node.t === 'assert') this.fail(`nothing to repeat at position ${this.i}`);
      if (this.peek() === '?') this.i++; // lazy: same set of full matches
      else if (this.peek() === '+') this.fail(`possessive quantifier at position ${this.i} is not supported`);
      node = { t: 'rep', node, min: q[0], max: q[1] };
    }
  }

  private quantifier(): [number, number] | null {
    const c = this.peek();
    if (c === '*') return (this.i++, [0, Infinity]);
    if (c === '+') return (this.i++, [1, Infinity]);
    if (c === '?') return (this.i++, [0, 1]);
    if (c !== '{') return null;
    const m = /^\{(\d*)(,?)(\d*)\}/.exec(this.src.slice(this.i));
    if (!m || (m[1] === '' && m[2] === '')) return null; // Python reads a stray '{' as a literal
    const min = m[1] === '' ? 0 : Number(m[1]);
    const max = m[2] === '' ? min : m[3] === '' ? Infinity : Number(m[3]);
    if (min > MAX_REPEAT || (max !== Infinity && max > MAX_REPEAT)) this.fail(`repeat count over ${MAX_REPEAT} in ${m[0]}`);
    if (max < min) this.fail(`min repeat greater than max repeat in ${m[0]}`);
    this.i += m[0].length;
    return [min, max];
  }

  private atom(): Node {
    const c = this.src[this.i++];
    switch (c) {
      case '(': return this.group();
      case '[': return { t: 'char', test: this.charClass() };
      case '.': return { t: 'char', test: (x) => x !== '\n' };
      case '^': return { t: 'assert', at: 'start' };
      case '$': return { t: 'assert', at: 'end' };
      case '\\': return this.escape(false) as Node;
      case '*': case '+': case '?': this.fail(`nothing to repeat at position ${this.i - 1}`);
      // falls through (fail never returns)
      default: return literal(c);
    }
  }

  private group(): Node {
    if (this.peek() === '?') {
      const rest = this.src.slice(this.i);
      const named = /^\?P?<[A-Za-z_][A-Za-z0-9_]*>/.exec(rest);
      if (rest.startsWith('?:')) this.i += 2;
      else if (named) this.i += named[0].length;
      else this.fail(`'(${rest.slice(0, 3)}' (lookaround, flags or backreference) at position ${this.i - 1} is not supported`);
    }
    const node = this.alternation();
    if (this.peek() !== ')') this.fail(`missing ')' for the group opened before position ${this.i}`);
    this.i++;
    return node;
  }

  /** An escape after '\\': a node, or inside a class only a CharTest. */
  private escape(inClass: boolean): Node | CharTest {
    const c = this.src[this.i++];
    if (c === undefined) this.fail('pattern ends with a lone backslash');
    const test = ({ d: isDigit, D: not(isDigit), w: isWord, W: not(isWord), s: isSpace, S: not(isSpace) } as Record<string, CharTest>)[c];
    if (test) return inClass ? test : { t: 'char', test };
    if (!inClass && c === 'A') return { t: 'assert', at: 'start' };
    if (!inClass && c === 'Z') return { t: 'assert', at: 'end' };
    if (/[0-9]/.test(c) || (!inClass && /[bBG]/.test(c))) this.fail(`'\\${c}' (backreference or word boundary) is not supported`);
    const ch = CONTROL[c] ?? c;
    return inClass ? (x: string) => x === ch : literal(ch);
  }

  private charClass(): CharTest {
    const tests: CharTest[] = [];
    let negate = false;
    if (this.peek() === '^') {
      negate = true;
      this.i++;
    }
    let first = true;
    for (;;) {
      const c = this.src[this.i];
      if (c === undefined) this.fail('unterminated character class');
      if (c === ']' && !first) {
        this.i++;
        break;
      }
      first = false;
      const lo = this.classChar();
      if (typeof lo === 'string' && this.peek() === '-' && this.src[this.i + 1] !== ']' && this.src[this.i + 1] !== undefined) {
        this.i++;
        const hi = this.classChar();
        if (typeof hi !== 'string' || hi < lo) this.fail(`bad character range ${lo}-${typeof hi === 'string' ? hi : '\\class'}`);
        tests.push((x) => x >= lo && x <= hi);
      } else {
        tests.push(typeof lo === 'string' ? (x) => x === lo : lo);
      }
    }
    const any: CharTest = (x) => tests.some((t) => t(x));
    return negate ? not(any) : any;
  }

  /** One class member: a character, or a CharTest for `\d`-style escapes. */
  private classChar(): string | CharTest {
    const c = this.src[this.i++];
    if (c !== '\\') return c;
    const e = this.src[this.i];
    if (e !== undefined && !/[dDwWsS]/.test(e)) {
      this.i++;
      return CONTROL[e] ?? e;
    }
    return this.escape(true) as CharTest;
  }
}

function literal(ch: string): Node {
  return { t: 'char', test: (x) => x === ch };
}

class Compiler {
  readonly states: State[] = [{ k: 'match' }];

  constructor(private readonly fail: (why: string) => never) {}

  private add(s: State): number {
    if (this.states.length >= MAX_PATTERN_STATES) this.fail(`it compiles to more than ${MAX_PATTERN_STATES} states (too complex)`);
    this.states.push(s);
    return this.states.length - 1;
  }

  /** States for `node`, continuing to `next`; returns the entry state. */
  build(node: Node, next: number): number {
    switch (node.t) {
      case 'char': return this.add({ k: 'char', test: node.test, out: next });
      case 'assert': return this.add({ k: 'assert', at: node.at, out: next });
      case 'seq': return node.items.reduceRight((cont, item) => this.build(item, cont), next);
      case 'alt': {
        const entries = node.options.map((o) => this.build(o, next));
        return entries.reduceRight((rest, e) => this.add({ k: 'split', a: e, b: rest }));
      }
      case 'rep': {
        let cont = next;
        if (node.max === Infinity) {
          const loop = this.add({ k: 'split', a: -1, b: next });
          (this.states[loop] as { a: number }).a = this.build(node.node, loop);
          cont = loop;
        } else {
          for (let i = node.min; i < node.max; i++) cont = this.add({ k: 'split', a: this.build(node.node, cont), b: next });
        }
        for (let i = 0; i < node.min; i++) cont = this.build(node.node, cont);
        return cont;
      }
    }
  }
}

function run(states: readonly State[], start: number, name: string): boolean {
  const seen = new Int32Array(states.length).fill(-1);
  let current: number[] = [];
  const close = (s: number, pos: number, into: number[]): void => {
    const stack = [s];
    while (stack.length) {
      const i = stack.pop()!;
      if (seen[i] === pos) continue;
      seen[i] = pos;
      const st = states[i];
      if (st.k === 'split') stack.push(st.b, st.a);
      else if (st.k === 'assert') {
        if ((st.at === 'start' && pos === 0) || (st.at === 'end' && pos === name.length)) stack.push(st.out);
      } else into.push(i);
    }
  };
  close(start, 0, current);
  for (let pos = 0; pos < name.length && current.length; pos++) {
    const c = name[pos];
    const next: number[] = [];
    for (const i of current) {
      const st = states[i];
      if (st.k === 'char' && st.test(c)) close(st.out, pos + 1, next);
    }
    current = next;
  }
  return current.some((i) => states[i].k === 'match');
}

const cache = new Map<string, NamePattern>();
const CACHE_SIZE = 256;

/**
 * Compiles a pattern with fullmatch semantics; errors name `field` and the pattern.
 * @example compileNamePattern('.*\\.(q|v)_proj', 'targetModules').test('layers.0.self_attn.q_proj') // true
 */
export function compileNamePattern(source: string, field: string, prefix = 'LoraConfig'): NamePattern {
  const hit = cache.get(source);
  if (hit) return hit;
  const fail = (why: string): never => {
    throw new Error(`${prefix}: ${field} ${JSON.stringify(source.length > 80 ? `${source.slice(0, 80)}...` : source)} is not a supported pattern: ${why}`);
  };
  if (source.length > MAX_PATTERN_LENGTH) fail(`longer than ${MAX_PATTERN_LENGTH} characters`);
  const ast = new Parser(source, fail).parse();
  const compiler = new Compiler(fail);
  const start = compiler.build(ast, 0);
  const { states } = compiler;
  const pattern: NamePattern = { source, test: (name) => run(states, start, name) };
  if (cache.size >= CACHE_SIZE) cache.delete(cache.keys().next().value as string);
  cache.set(source, pattern);
  return pattern;
}
