// The flame graph's colours. Pure: no DOM.
//
// Each frame gets a one-byte colour code once per data change (colorCodes),
// and each draw turns a code into a fill (frameFill), so a redraw of 50k
// frames does no hashing and no string building:
//  - normal: warm for ordinary frames, cool for inlined ones, the shade picked
//    by a hash of the function name so a function keeps its colour across
//    refreshes and zooms; grey for the root, unsymbolized frames and build-id
//    mismatches. Codes: 0..23 warm, 100..123 cool, 255 grey.
//  - diff (against a snapshot): red for frames that grew, blue for frames
//    that shrank, deeper with the change's size; neutral for no change.
//    Codes: 0 neutral, 1..16 grew, 17..32 shrank.
//  - search: matches in one colour, everything else faded, whatever the code.

const kPaletteSize = 24;
const kCoolCode = 100;   // + palette slot: an inlined frame
const kGrayCode = 255;
const kWarm = [];
const kCool = [];
for (let i = 0; i < kPaletteSize; i++) {
  const t = i / (kPaletteSize - 1);
  kWarm.push(`hsl(${Math.round(8 + 42 * t)}, ${Math.round(78 - 10 * t)}%, ${Math.round(60 + 6 * (i % 3))}%)`);
  kCool.push(`hsl(${Math.round(165 + 30 * t)}, 45%, ${Math.round(62 + 5 * (i % 3))}%)`);
}
const kGray = 'hsl(0, 0%, 74%)';
const kFaded = 'hsl(30, 8%, 88%)';
const kMatch = 'hsl(290, 70%, 58%)';
const kDiffSteps = 16;
const kDiff = ['hsl(0, 0%, 86%)'];
for (let i = 1; i <= kDiffSteps; i++) kDiff.push(`hsl(4, ${40 + 45 * i / kDiffSteps}%, ${86 - 32 * i / kDiffSteps}%)`);
for (let i = 1; i <= kDiffSteps; i++) kDiff.push(`hsl(215, ${40 + 45 * i / kDiffSteps}%, ${86 - 30 * i / kDiffSteps}%)`);

// Palette slot per function name (FNV-1a), cached: names repeat across
// frames and refreshes.
const kSlotCache = new Map();
function paletteSlot(s) {
  let slot = kSlotCache.get(s);
  if (slot === undefined) {
    let h = 2166136261;
    for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
    slot = (h >>> 0) % kPaletteSize;
    if (kSlotCache.size > 200000) kSlotCache.clear();
    kSlotCache.set(s, slot);
  }
  return slot;
}

/**
 * Colour codes of the nodes of a laid-out tree (flame_layout.js's `nodes`,
 * root first), one byte each. diff: colour by `delta` (grew/shrank), on a
 * square-root scale of |delta| against the largest below the root, so that
 * small changes still show next to a big one.
 */
export function colorCodes(nodes, diff) {
  const n = nodes.length;
  const codes = new Uint8Array(n);
  if (diff) {
    let maxAbs = 0;
    for (let i = 1; i < n; i++) maxAbs = Math.max(maxAbs, Math.abs(+nodes[i].delta || 0));
    for (let i = 0; i < n; i++) {
      const d = +nodes[i].delta || 0;
      if (!maxAbs || !d) continue;  // 0: neutral
      const step = Math.max(1, Math.min(kDiffSteps, Math.round(Math.sqrt(Math.abs(d) / maxAbs) * kDiffSteps)));
      codes[i] = d > 0 ? step : kDiffSteps + step;
    }
    return codes;
  }
  for (let i = 0; i < n; i++) {
    const node = nodes[i];
    if (node.unsymbolized || node.mismatch || i === 0) codes[i] = kGrayCode;
    else codes[i] = paletteSlot(node.name || '') + (node.inlined ? kCoolCode : 0);
  }
  return codes;
}

/**
 * The fill style of a frame with colour `code` (from colorCodes with the same
 * `diff`). matched: undefined when no search is on; else whether the search
 * matches the frame, which then decides the colour alone.
 */
export function frameFill(code, diff, matched) {
  if (matched !== undefined) return matched ? kMatch : kFaded;
  if (diff) return kDiff[code];
  if (code === kGrayCode) return kGray;
  return code >= kCoolCode ? kCool[code - kCoolCode] : kWarm[code];
}
