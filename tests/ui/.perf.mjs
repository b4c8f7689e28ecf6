import { chromium } from 'playwright-core';
import fs from 'node:fs'; import os from 'node:os'; import path from 'node:path';
import { synthesizeTree } from './synthetic_tree.mjs';
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hw-chrome-'));
const ctx = await chromium.launchPersistentContext(dir, { executablePath: '/usr/bin/chromium', headless: true, viewport: { width: 1280, height: 800 },
  args: ['--headless','--no-sandbox','--disable-gpu','--disable-quic','--no-first-run','--disable-background-networking','--disable-component-update','--disable-sync'] });
const page = await ctx.newPage();
page.on('console', (m) => console.log('console:', m.text()));
await page.goto('http://127.0.0.1:8099/');
await page.waitForFunction(() => window.heapwatch && window.heapwatch.loads > 0);
await page.evaluate(() => window.heapwatch.setAutoRefresh(false));
const r = await page.evaluate(async (src) => {
  const synth = new Function(`return (${src})`)();
  let t = performance.now();
  const tree = synth(50000, 40, 12345);
  const synthMs = performance.now() - t;
  const f = window.heapwatch.flame;
  const out = { synthMs };
  for (let k = 0; k < 3; k++) { t = performance.now(); f.setData(tree, {unit:'bytes'}); out['layout' + k] = performance.now() - t; }
  await new Promise(r => requestAnimationFrame(r)); await new Promise(r => requestAnimationFrame(r));
  out.draw = f.stats().drawMs; out.drawn = f.stats().drawn;
  return out;
}, synthesizeTree.toString());
console.log(JSON.stringify(r));
await ctx.close();
