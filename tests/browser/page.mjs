// The live page as a person sees it, in Debian's chromium driven by playwright-core.
//
//   node tests/browser/page.mjs URL SCREENSHOT.png
//
// URL is a running `poirot demo` with SIMULATE_S3_BEHAVIOUR=ERROR. Checks that the page
// loads, that the graph draws the destination nobody consumes (SANDBOX_RESULT) as such and
// S3, which sends no spans, as a virtual node,
// that the RED table fills, and that clicking an anomaly group opens its waterfall with the
// lost message marked; then keeps a screenshot. Exits non-zero, saying what failed.
import { chromium } from 'playwright-core';

const [url, screenshot] = process.argv.slice(2);
if (!url || !screenshot) {
  console.error('usage: node page.mjs URL SCREENSHOT.png');
  process.exit(2);
}

const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
// Without the background-networking flags chromium tries to reach Google's hosts.
const browser = await chromium.launch({
  executablePath,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
let failed = null;
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const errors = [];
  page.on('pageerror', e => errors.push(String(e)));
  await page.goto(url, { waitUntil: 'load' });
  const within = { timeout: 45_000 };
  // The graph: services and destinations, the unconsumed one in the error style.
  await page.waitForSelector('#graph svg g.node.destination.unconsumed[data-name="SANDBOX_RESULT"]', within);
  await page.waitForSelector('#graph svg g.node.service[data-name="SandboxAnalyser"]', within);
  await page.waitForSelector('#graph svg g.node.destination[data-name="SAMPLE_RECEIVED"]', within);
  // S3 is called and sends no spans: a virtual node.
  await page.waitForSelector('#graph svg g.node.virtual[data-name="s3"]', within);
  // RED over a window: rows with rates and bucket ranges.
  await page.waitForSelector('#red tr td.num', within);
  // The anomaly groups; a click opens the evidence as a waterfall with the lost message marked.
  const group = await page.waitForSelector('#groups tr.group', within);
  const kind = await group.$eval('.kind', e => e.textContent);
  if (kind !== 'message_loss') throw new Error(`the first anomaly group is ${kind}, not message_loss`);
  await group.click();
  await page.waitForSelector('#detail.open #waterfall svg g.span.lost', within);
  const note = await page.$eval('#waterfall svg g.span.lost', g => g.textContent);
  if (!note.includes('nobody consumed')) throw new Error(`the lost span says ${JSON.stringify(note)}`);
  await page.waitForTimeout(500);
  await page.screenshot({ path: screenshot, fullPage: true });
  if (errors.length) throw new Error(`errors in the page: ${errors.join('; ')}`);
} catch (e) {
  failed = e;
} finally {
  await browser.close();
}
if (failed) {
  console.error(`page test failed: ${failed.message}`);
  process.exit(1);
}
console.log(`page test passed; screenshot in ${screenshot}`);
