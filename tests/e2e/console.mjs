// Drives the console in headless Chromium for tests/console.rs, talking to it over stdio:
// prints READY once the first fault shows on the map and in the table, waits for a line
// naming the next fault (published by the test), checks it appears live, moves a crew member
// to it on the staffing board, prints MOVED <staff id>, and takes a screenshot.
import { chromium } from "playwright-core";
import readline from "node:readline";

const { BASE_URL, API_KEY, SCREENSHOT, FIRST_FAULT } = process.env;
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 800 } });
  page.on("console", (m) => console.error(`[page] ${m.text()}`));
  page.on("response", (r) => { if (r.status() >= 400) console.error(`[page] ${r.status()} ${r.url()}`); });
  await page.goto(`${BASE_URL}/#key=${API_KEY}`);
  const onMap = (id) => page.waitForSelector(`#map path.fault[data-fault-id="${id}"]`, { timeout: 20000 });
  const inTable = (id) => page.waitForSelector(`#faults tbody tr[data-fault-id="${id}"]`, { timeout: 20000 });
  await Promise.all([onMap(FIRST_FAULT), inTable(FIRST_FAULT)]);
  if (page.url().includes("key=")) throw new Error("the key stayed in the address bar");
  await page.waitForSelector("#map circle.staff.busy", { timeout: 20000 });
  console.log("READY");

  const next = (await lines.next()).value.trim();
  // No reload: the fault must arrive over the live stream.
  await Promise.all([onMap(next), inTable(next)]);
  await page.waitForSelector("#live:not(.off)");

  await page.click('nav button[data-tab="board"]');
  const slot = page.locator(`#board .column[data-fault-id="${FIRST_FAULT}"] .slot:has(button.move)`).first();
  await slot.waitFor({ timeout: 20000 });
  const staff = await slot.getAttribute("data-staff-id");
  await slot.locator("select").selectOption(next);
  await slot.locator("button.move").click();
  await page.waitForSelector(`#board .column[data-fault-id="${next}"] .slot[data-staff-id="${staff}"] .pin`, { timeout: 20000 });
  console.log(`MOVED ${staff}`);
  await page.click('nav button[data-tab="faults"]');
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
} catch (e) {
  console.log(`ERROR ${e.message.split("\n")[0]}`);
  process.exitCode = 1;
} finally {
  await browser.close();
  // stdin keeps the event loop alive; the test has nothing more to say.
  process.exit();
}
