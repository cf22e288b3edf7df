// SPDX-License-Identifier: MIT
// The dashboard in Debian's chromium, driven by playwright-core. Run by
// tests/py/test_web.py, which owns the daemon and the training job and talks to this
// script in lines: it prints "loaded" once the page shows the runs, waits for "wrote
// STEP" (the test wrote a checkpoint), prints "live" when that point is on the chart
// without a reload, then overlays the second run and prints "ok". Any failure exits 1
// with the reason.
//   node dashboard.test.js URL RUN1 RUN2 SCREENSHOT
'use strict';
const {chromium} = require('playwright-core');
const readline = require('readline');

const [url, run1, run2, screenshot] = process.argv.slice(2);
const lines = readline.createInterface({input: process.stdin});
const nextLine = () => new Promise((resolve) => lines.once('line', resolve));

async function main() {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const errors = [];
  try {
    const page = await browser.newPage({viewport: {width: 1400, height: 900}});
    page.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}`); });
    page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
    page.on('requestfailed', (r) => {
      if (!r.url().includes('/api/v1/events')) errors.push(`request failed: ${r.url()}`);
    });
    await page.goto(url);
    await page.waitForSelector(`#runs tr[data-run="${run1}"]`, {timeout: 15000});
    await page.waitForSelector(`#runs tr[data-run="${run2}"]`, {timeout: 15000});
    await page.waitForSelector(`circle.point[data-run="${run1}"]`, {timeout: 15000});
    await page.waitForSelector('#live.on', {timeout: 15000});
    const before = await page.$$eval(`circle.point[data-run="${run1}"]`, (c) => c.length);
    console.log(`loaded ${before}`);
    const wrote = (await nextLine()).split(' ');
    await page.waitForSelector(`circle.point[data-run="${run1}"][data-step="${wrote[1]}"]`, {timeout: 30000});
    const navigations = await page.evaluate(() => performance.getEntriesByType('navigation').length);
    if (navigations !== 1) throw new Error(`the page reloaded (${navigations} navigations)`);
    console.log('live');
    await page.check(`#runs input[data-run="${run2}"]`);
    await page.waitForSelector(`g.series[data-run="${run2}"] circle.point`, {timeout: 15000});
    const overlaid = await page.$$eval('g.series', (g) => g.map((x) => x.dataset.run));
    if (!overlaid.includes(run1) || !overlaid.includes(run2)) throw new Error(`overlay shows ${overlaid}`);
    const bands = await page.$$eval(`g.series[data-run="${run1}"] polygon.band`, (b) => b.length);
    if (bands < 1) throw new Error('no ±2 SE band drawn for a sampled run');
    await page.selectOption('#metric', 'eval_accuracy');
    await page.waitForSelector('polyline.metric-line', {timeout: 5000});
    await page.click(`circle.point[data-run="${run1}"][data-step="${wrote[1]}"]`);
    await page.waitForSelector('#spectrum-line', {timeout: 5000});
    const title = await page.textContent('#spectrum-title');
    if (!title.includes(wrote[1])) throw new Error(`spectrum title '${title}'`);
    await page.screenshot({path: screenshot, fullPage: true});
    if (errors.length) throw new Error(errors.join('\n'));
    console.log('ok');
  } finally {
    await browser.close();
  }
}

main().then(() => process.exit(0), (e) => {
  console.log(`FAIL ${e.stack || e}`);
  process.exit(1);
});
