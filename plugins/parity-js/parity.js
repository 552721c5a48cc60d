// The cross-language parity functions in JavaScript (see plugins/parity-rust).

export function dollar_to_euro(amount) {
  return Number(amount) * 0.908;
}

export function exclaim(text) {
  return text + "!";
}

export function or_default(text) {
  return text === null ? "(none)" : text;
}

export function slug(text) {
  let out = "";
  for (const c of text) {
    if (/^[A-Za-z0-9]$/.test(c)) out += c.toLowerCase();
    else if (out !== "" && !out.endsWith("-")) out += "-";
  }
  if (out.endsWith("-")) out = out.slice(0, -1);
  if (out === "") throw new Error("no letters or digits to make a slug of");
  return out;
}

// The greatest common divisor by Euclid's loop (arrow-udf's benchmark function). int64 arrives as
// BigInt.
export function euclid_gcd(a, b) {
  while (b !== 0n) {
    const t = b;
    b = a % b;
    a = t;
  }
  return a;
}

// `gcd` over int32: Numbers, not BigInts.
export function euclid_gcd32(a, b) {
  while (b !== 0) {
    const t = b;
    b = a % b;
    a = t;
  }
  return a;
}
