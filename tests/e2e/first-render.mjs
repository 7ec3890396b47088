// Console first render for `faultline bench api`: opens the console with a key and prints the
// milliseconds from navigation start until the faults table and every fault on the map are
// drawn. Usage: node first-render.mjs <base url> <key> <open faults>
import { chromium } from "playwright-core";

const [base, key, faults] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const times = [];
  for (let run = 0; run < 5; run++) {
    const page = await browser.newPage({ viewport: { width: 1400, height: 800 } });
    await page.goto(`${base}/#key=${key}`);
    const handle = await page.waitForFunction((n) => {
      const rows = document.querySelectorAll("#faults tbody tr").length;
      const shapes = document.querySelectorAll("#map path.fault").length;
      return rows >= n && shapes >= n ? performance.now() : null;
    }, Number(faults), { timeout: 60000, polling: 10 });
    times.push(await handle.jsonValue());
    await page.close();
  }
  times.sort((a, b) => a - b);
  console.log(JSON.stringify({ runs: times.map(Math.round), median_ms: Math.round(times[2]) }));
} finally {
  await browser.close();
}
