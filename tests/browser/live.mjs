// The live view in a real browser: Debian's chromium driven by playwright-core, against a daemon and a
// private broker that tests/it/browser.rs started. It publishes frames with `mqimg publish` and checks
// what the page shows by reading pixels back from the images the browser decoded.
//
// Input: the JSON plan in MQIMG_BROWSER_PLAN (written by browser.rs). Output: screenshots in plan.out,
// one line per step on stdout; exit 1 with the reason on the first failure.

import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const plan = JSON.parse(process.env.MQIMG_BROWSER_PLAN);
const DEADLINE_MS = 2000;
const TOLERANCE = 48;
const started = Date.now();

function log(message) {
  console.log(`[${((Date.now() - started) / 1000).toFixed(2)} s] ${message}`);
}

function publish(topic, file, encoding = "raw") {
  execFileSync(plan.mqimg, ["publish", "--broker", plan.broker, "--topic", topic, "--encoding", encoding, file], {
    stdio: ["ignore", "ignore", "inherit"],
  });
}

// Polls `probe` (run in the page) until `accept` takes its result; fails after `ms`.
async function within(page, ms, what, probe, arg, accept) {
  const until = Date.now() + ms;
  let last;
  for (;;) {
    last = await page.evaluate(probe, arg);
    if (accept(last)) return last;
    if (Date.now() > until) throw new Error(`${what}: not within ${ms} ms; last seen: ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// Pixels at the centres of the four quadrants of an <img>, as the browser decoded it.
function samplePixels(target) {
  let img;
  if (target.topic !== undefined) {
    const tile = [...document.querySelectorAll(".tile")].find((t) => t.dataset.topic === target.topic);
    img = tile && tile.querySelector("img");
  } else {
    img = document.getElementById(target.id);
  }
  // A multipart (MJPEG) image never completes: a decoded frame shows as its natural width.
  if (!img || img.naturalWidth === 0) return null;
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const g = canvas.getContext("2d");
  g.drawImage(img, 0, 0);
  const at = (fx, fy) => Array.from(g.getImageData(Math.floor(fx * canvas.width), Math.floor(fy * canvas.height), 1, 1).data.slice(0, 3));
  return { width: img.naturalWidth, pixels: [at(0.25, 0.25), at(0.75, 0.25), at(0.25, 0.75), at(0.75, 0.75)] };
}

function matches(colours) {
  return (seen) =>
    seen !== null &&
    seen.pixels.every((px, i) => px.every((v, c) => Math.abs(v - colours[i][c]) <= TOLERANCE));
}

// Saves what the page looked like, once there is a page.
let failed = async () => {};

async function main() {
  mkdirSync(plan.out, { recursive: true });
  rmSync(join(plan.out, "failure.png"), { force: true });
  const browser = await chromium.launch({
    executablePath: plan.chromium,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
    failed = async () => {
      await page.screenshot({ path: join(plan.out, "failure.png"), fullPage: true });
      const state = await page.evaluate(() => ({
        url: location.href,
        status: document.getElementById("status")?.textContent,
        stream: document.getElementById("stream")?.getAttribute("src"),
        text: document.body.innerText.slice(0, 2000),
      }));
      console.error(`the page when it failed (failure.png): ${JSON.stringify(state, null, 2)}`);
    };
    const problems = [];
    page.on("console", (m) => m.type() === "error" && problems.push(`console: ${m.text()}`));
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    const { a, b, c, bad } = plan.frames;
    const topic = plan.topic;

    await page.goto(plan.base + "/");
    await within(page, 10000, "the event feed connecting", () => document.getElementById("status").className, null, (s) => s.includes("live"));

    // The README's picture: the fixture frames on a few cameras, and one that sends a broken frame.
    for (const [name, file, encoding] of plan.gallery) publish(name, file, encoding);
    for (const [name] of plan.gallery) {
      await within(page, 10000, `a tile for ${name}`, samplePixels, { topic: name }, (s) => s !== null);
    }
    await within(page, 10000, "the failed count showing", () => [...document.querySelectorAll(".failed.some")].length, null, (n) => n > 0);
    const bottom = await page.evaluate(() => Math.ceil(document.getElementById("tiles").getBoundingClientRect().bottom) + 16);
    const clip = { x: 0, y: 0, width: 1280, height: Math.min(720, bottom) };
    await page.screenshot({ path: join(plan.out, "gallery.png"), clip });
    await page.screenshot({ path: join(plan.out, "gallery.jpg"), type: "jpeg", quality: 70, clip });
    if (plan.docs) {
      copyFileSync(join(plan.out, "gallery.jpg"), plan.docs);
      log(`README screenshot updated: ${plan.docs}`);
    }

    await page.evaluate(() => {
      window.notReloaded = true;
    });
    log("gallery open, events connected");

    publish(topic, a.file);
    let t0 = Date.now();
    const first = await within(page, DEADLINE_MS, "a tile showing frame A", samplePixels, { topic }, matches(a.colours));
    log(`tile shows frame A (decoded ${first.width} px wide) ${Date.now() - t0} ms after publishing`);

    publish(topic, b.file, "base64");
    t0 = Date.now();
    await within(page, DEADLINE_MS, "the tile changing to frame B", samplePixels, { topic }, matches(b.colours));
    log(`tile changed to frame B ${Date.now() - t0} ms after publishing`);
    if (!(await page.evaluate(() => window.notReloaded === true))) throw new Error("the page reloaded");
    await page.screenshot({ path: join(plan.out, "gallery-test.png") });

    // The tile links to the topic's page (its URL encoding is the page's own).
    await page.click(`.tile[data-topic="${topic}"] a.shot`);
    await page.waitForURL((u) => u.pathname.startsWith("/topics/"));
    log(`topic page: ${page.url()}`);
    await within(page, 10000, "the topic page's event feed", () => document.getElementById("status").className, null, (s) => s.includes("live"));
    await within(page, DEADLINE_MS * 2, "the stream showing frame B", samplePixels, { id: "stream" }, matches(b.colours));
    log("stream shows frame B");
    publish(topic, c.file);
    t0 = Date.now();
    await within(page, DEADLINE_MS, "the stream changing to frame C (PNG, streamed as JPEG)", samplePixels, { id: "stream" }, matches(c.colours));
    log(`stream changed to frame C ${Date.now() - t0} ms after publishing`);

    publish(topic, bad.file);
    t0 = Date.now();
    const failure = await within(
      page,
      DEADLINE_MS,
      "a failure row for the truncated frame",
      () => {
        const row = document.querySelector("#records tr");
        return row && { outcome: row.dataset.outcome, cells: [...row.cells].map((td) => td.textContent) };
      },
      null,
      (r) => r !== null && r.outcome === "failed",
    );
    log(`failure listed ${Date.now() - t0} ms after publishing: ${failure.cells.join(" | ")}`);
    const latest = await page.evaluate(() => JSON.parse(document.getElementById("latest").textContent));
    if (latest.stage !== "decode" || latest.topic !== topic) throw new Error(`latest record: ${JSON.stringify(latest)}`);
    const rows = await page.evaluate(() => document.querySelectorAll("#records tr").length);
    if (rows < 4) throw new Error(`${rows} records listed, expected the 4 published`);
    await page.screenshot({ path: join(plan.out, "topic.png"), fullPage: true });

    if (problems.length) throw new Error(`the page reported problems:\n${problems.join("\n")}`);
    log(`screenshots in ${plan.out}`);
  } catch (e) {
    await failed().catch((why) => console.error(`no failure screenshot: ${why}`));
    throw e;
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error(`browser test failed: ${e.stack || e}`);
  process.exit(1);
});
