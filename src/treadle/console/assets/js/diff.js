// What a step changed: the difference between two JSON values (a checkpoint's state and its
// parent's), as a flat list of {path, kind: "added"|"removed"|"changed", before, after}.
// Objects are compared key by key and lists index by index, so a message appended to a
// list shows as one "added" entry at its index; past `maxDepth` a changed value is reported
// whole.

export function diff(before, after, { maxDepth = 6 } = {}) {
  const out = [];
  walk(before, after, [], out, maxDepth);
  return out;
}

function isObject(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function same(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

function walk(a, b, path, out, depth) {
  if (same(a, b)) return;
  if (a === undefined) { out.push({ path, kind: "added", after: b }); return; }
  if (b === undefined) { out.push({ path, kind: "removed", before: a }); return; }
  if (depth > 0 && isObject(a) && isObject(b)) {
    for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) {
      walk(a[key], b[key], [...path, key], out, depth - 1);
    }
    return;
  }
  if (depth > 0 && Array.isArray(a) && Array.isArray(b)) {
    const n = Math.max(a.length, b.length);
    for (let i = 0; i < n; i += 1) {
      walk(i < a.length ? a[i] : undefined, i < b.length ? b[i] : undefined, [...path, i], out, depth - 1);
    }
    return;
  }
  out.push({ path, kind: "changed", before: a, after: b });
}

/** "messages[2].content" for ["messages", 2, "content"]. */
export function pathText(path) {
  if (!path.length) return "(whole state)";
  return path.map((p, i) => (typeof p === "number" ? `[${p}]` : i === 0 ? p : `.${p}`)).join("");
}
