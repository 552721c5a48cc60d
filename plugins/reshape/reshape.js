// Reshape JSON documents carried in string columns: extract, pick, flatten.
// Signatures are in weir-plugin.yaml; `scale` shows the columnar API (whole typed arrays).

function parse(doc) {
  try {
    return JSON.parse(doc);
  } catch (error) {
    throw new Error(`not JSON: ${error.message}`);
  }
}

function walk(value, path) {
  for (const key of path.split(".")) {
    if (value === null || typeof value !== "object" || !(key in value)) return undefined;
    value = value[key];
  }
  return value;
}

export function json_get(doc, path) {
  const value = walk(parse(doc), path);
  if (value === undefined || value === null) return null;
  return typeof value === "string" ? value : JSON.stringify(value);
}

export function json_pick(doc, keys) {
  const value = parse(doc);
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw new Error("not a JSON object");
  const picked = {};
  for (const key of keys.split(",").map((k) => k.trim())) {
    if (key in value) picked[key] = value[key];
  }
  return JSON.stringify(picked);
}

export function json_flatten(doc) {
  const out = {};
  const visit = (value, prefix) => {
    if (value !== null && typeof value === "object" && Object.keys(value).length > 0) {
      for (const [key, child] of Object.entries(value)) visit(child, prefix === "" ? key : `${prefix}.${key}`);
    } else {
      out[prefix] = value;
    }
  };
  visit(parse(doc), "");
  return JSON.stringify(out);
}

export function json_number(doc, path) {
  const value = walk(parse(doc), path);
  if (value === undefined || value === null) return null;
  if (typeof value !== "number") throw new Error(`${path} is ${typeof value}, not a number`);
  return value;
}

export function scale(values, factors) {
  const out = new Float64Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = values[i] * factors[i];
  return out;
}
