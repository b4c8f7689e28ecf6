import { chromium } from 'playwright-core';
import fs from 'node:fs'; import os from 'node:os'; import path from 'node:path';
const [url, out, w, h, actions] = process.argv.slice(2);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hw-chrome-'));
const ctx = await chromium.launchPersistentContext(dir, { executablePath: '/usr/bin/chromium', headless: true,
  viewport: { width: +(w||1280), height: +(h||800) },
  args: ['--headless','--no-sandbox','--disable-gpu','--disable-quic','--no-first-run','--disable-background-networking','--disable-component-update','--disable-sync'] });
const page = await ctx.newPage();
page.on('console', (m) => console.log('console:', m.type(), m.text()));
page.on('pageerror', (e) => console.log('pageerror:', e.message));
await page.goto(url);
await page.waitForFunction(() => window.heapwatch && window.heapwatch.loads > 0, null, { timeout: 10000 });
await page.waitForTimeout(400);
if (actions) { const f = new Function('page', `return (async () => { ${actions} })()`); await f(page); await page.waitForTimeout(400); }
await page.screenshot({ path: out, fullPage: true });
console.log(await page.evaluate(() => JSON.stringify({ stats: heapwatch.flame.stats(), hash: location.hash })));
await ctx.close(); fs.rmSync(dir, { recursive: true, force: true });
