/**
 * ot.js TextOperation semantics on the protocol's JSON form (see collab/ot.py, the server's
 * reference implementation): a list whose items are a positive integer (retain), a string
 * (insert) or a negative integer (delete), walking the whole document. Lengths are UTF-16
 * code units, which is what JavaScript strings and CodeMirror count, so nothing converts.
 */

export type Component = number | string;
export type Op = Component[];

/** ot.js's builder: canonical form (merged neighbours, an insert never after a delete). */
export class Builder {
  readonly ops: Op = [];

  retain(n: number): this {
    if (n <= 0) return this;
    const last = this.ops[this.ops.length - 1];
    if (typeof last === "number" && last > 0) this.ops[this.ops.length - 1] = last + n;
    else this.ops.push(n);
    return this;
  }

  insert(s: string): this {
    if (s === "") return this;
    const ops = this.ops;
    const last = ops[ops.length - 1];
    if (typeof last === "string") {
      ops[ops.length - 1] = last + s;
    } else if (typeof last === "number" && last < 0) {
      const prev = ops[ops.length - 2];
      if (typeof prev === "string") ops[ops.length - 2] = prev + s;
      else ops.splice(ops.length - 1, 0, s);
    } else {
      ops.push(s);
    }
    return this;
  }

  delete(n: number): this {
    if (n <= 0) return this;
    const last = this.ops[this.ops.length - 1];
    if (typeof last === "number" && last < 0) this.ops[this.ops.length - 1] = last - n;
    else this.ops.push(-n);
    return this;
  }
}

const isRetain = (c: Component | undefined): boolean => typeof c === "number" && c > 0;
const isDelete = (c: Component | undefined): boolean => typeof c === "number" && c < 0;
const isInsert = (c: Component | undefined): boolean => typeof c === "string";

export function baseLength(op: Op): number {
  let n = 0;
  for (const c of op) if (typeof c === "number") n += Math.abs(c);
  return n;
}

export function targetLength(op: Op): number {
  let n = 0;
  for (const c of op) n += typeof c === "string" ? c.length : c > 0 ? c : 0;
  return n;
}

export function isNoop(op: Op): boolean {
  return op.length === 0 || (op.length === 1 && isRetain(op[0]));
}

export function apply(doc: string, op: Op): string {
  if (baseLength(op) !== doc.length) {
    throw new Error(`base length ${baseLength(op)} != document length ${doc.length}`);
  }
  const out: string[] = [];
  let pos = 0;
  for (const c of op) {
    if (typeof c === "string") out.push(c);
    else if (c > 0) {
      out.push(doc.slice(pos, pos + c));
      pos += c;
    } else pos -= c;
  }
  return out.join("");
}

/** One op with the effect of `a` then `b`. */
export function compose(a: Op, b: Op): Op {
  if (targetLength(a) !== baseLength(b)) {
    throw new Error("compose: the target length of a differs from the base length of b");
  }
  const out = new Builder();
  let i1 = 0;
  let i2 = 0;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a faithful port of ot.js
  let op1: any = a[i1++];
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  let op2: any = b[i2++];
  for (;;) {
    if (op1 === undefined && op2 === undefined) break;
    if (isDelete(op1)) {
      out.delete(-op1);
      op1 = a[i1++];
      continue;
    }
    if (isInsert(op2)) {
      out.insert(op2);
      op2 = b[i2++];
      continue;
    }
    if (op1 === undefined || op2 === undefined) throw new Error("compose: operations do not fit");
    if (isRetain(op1) && isRetain(op2)) {
      if (op1 > op2) {
        out.retain(op2);
        op1 -= op2;
        op2 = b[i2++];
      } else if (op1 === op2) {
        out.retain(op1);
        op1 = a[i1++];
        op2 = b[i2++];
      } else {
        out.retain(op1);
        op2 -= op1;
        op1 = a[i1++];
      }
    } else if (isInsert(op1) && isDelete(op2)) {
      if (op1.length > -op2) {
        op1 = op1.slice(-op2);
        op2 = b[i2++];
      } else if (op1.length === -op2) {
        op1 = a[i1++];
        op2 = b[i2++];
      } else {
        op2 += op1.length;
        op1 = a[i1++];
      }
    } else if (isInsert(op1) && isRetain(op2)) {
      if (op1.length > op2) {
        out.insert(op1.slice(0, op2));
        op1 = op1.slice(op2);
        op2 = b[i2++];
      } else if (op1.length === op2) {
        out.insert(op1);
        op1 = a[i1++];
        op2 = b[i2++];
      } else {
        out.insert(op1);
        op2 -= op1.length;
        op1 = a[i1++];
      }
    } else if (isRetain(op1) && isDelete(op2)) {
      if (op1 > -op2) {
        out.delete(-op2);
        op1 += op2;
        op2 = b[i2++];
      } else if (op1 === -op2) {
        out.delete(-op2);
        op1 = a[i1++];
        op2 = b[i2++];
      } else {
        out.delete(op1);
        op2 += op1;
        op1 = a[i1++];
      }
    } else {
      throw new Error("compose: unexpected components");
    }
  }
  return out.ops;
}

/** `[a', b']` with apply(apply(d, a), b') == apply(apply(d, b), a'); a's inserts win ties. */
export function transform(a: Op, b: Op): [Op, Op] {
  if (baseLength(a) !== baseLength(b)) throw new Error("transform: base lengths differ");
  const ap = new Builder();
  const bp = new Builder();
  let i1 = 0;
  let i2 = 0;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a faithful port of ot.js
  let op1: any = a[i1++];
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  let op2: any = b[i2++];
  for (;;) {
    if (op1 === undefined && op2 === undefined) break;
    if (isInsert(op1)) {
      ap.insert(op1);
      bp.retain(op1.length);
      op1 = a[i1++];
      continue;
    }
    if (isInsert(op2)) {
      ap.retain(op2.length);
      bp.insert(op2);
      op2 = b[i2++];
      continue;
    }
    if (op1 === undefined || op2 === undefined) throw new Error("transform: operations do not fit");
    let min: number;
    if (isRetain(op1) && isRetain(op2)) {
      if (op1 > op2) {
        min = op2;
        op1 -= op2;
        op2 = b[i2++];
      } else if (op1 === op2) {
        min = op2;
        op1 = a[i1++];
        op2 = b[i2++];
      } else {
        min = op1;
        op2 -= op1;
        op1 = a[i1++];
      }
      ap.retain(min);
      bp.retain(min);
    } else if (isDelete(op1) && isDelete(op2)) {
      if (-op1 > -op2) {
        op1 -= op2;
        op2 = b[i2++];
      } else if (op1 === op2) {
        op1 = a[i1++];
        op2 = b[i2++];
      } else {
        op2 -= op1;
        op1 = a[i1++];
      }
    } else if (isDelete(op1) && isRetain(op2)) {
      if (-op1 > op2) {
        min = op2;
        op1 += op2;
        op2 = b[i2++];
      } else if (-op1 === op2) {
        min = op2;
        op1 = a[i1++];
        op2 = b[i2++];
      } else {
        min = -op1;
        op2 += op1;
        op1 = a[i1++];
      }
      ap.delete(min);
    } else if (isRetain(op1) && isDelete(op2)) {
      if (op1 > -op2) {
        min = -op2;
        op1 += op2;
        op2 = b[i2++];
      } else if (op1 === -op2) {
        min = op1;
        op1 = a[i1++];
        op2 = b[i2++];
      } else {
        min = op1;
        op2 += op1;
        op1 = a[i1++];
      }
      bp.delete(min);
    } else {
      throw new Error("transform: unexpected components");
    }
  }
  return [ap.ops, bp.ops];
}

/** ot.js Selection's transformIndex: where a position ends up after `op`. */
export function transformPosition(position: number, op: Op): number {
  let index = position;
  let moved = position;
  for (const c of op) {
    if (typeof c === "string") moved += c.length;
    else if (c > 0) index -= c;
    else {
      moved -= Math.min(index, -c);
      index += c;
    }
    if (index < 0) break;
  }
  return moved;
}
