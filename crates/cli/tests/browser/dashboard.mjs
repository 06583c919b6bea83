// The dashboard in a real browser: Debian's Chromium driven by playwright-core, against a
// `shopfloor serve` that ../dashboard.rs started and seeded. Every check names what it saw;
// any failure exits 1. Screenshots of every page, light and dark, go to SHOTS.
//
// Environment (set by the Rust test): BASE, ADMIN_LINK, VIEWER_LINK, API_KEY (a key that may
// read runs), WORKFLOW, EVAL_A, EVAL_B, RUN_ID (a plain run), RUNS (how many runs in all),
// HELD (how many were held), SHOTS (a folder), CHROMIUM (the browser's path).
import { chromium } from "playwright-core";
import { createRequire } from "node:module";
import { mkdirSync, readFileSync } from "node:fs";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const BASE = env("BASE");
const SHOTS = env("SHOTS");
const WORKFLOW = env("WORKFLOW");
mkdirSync(SHOTS, { recursive: true });
const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

let failures = 0;
function check(ok, what) {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) failures += 1;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});

async function axe(page, name) {
  await page.addScriptTag({ content: axeSource });
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ["violations"] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length, help: v.help }));
  });
  const bad = result.filter((v) => v.impact === "serious" || v.impact === "critical");
  check(bad.length === 0, `${name}: no serious or critical axe violations ${bad.length ? JSON.stringify(bad) : ""}`);
}

async function shoot(page, name) {
  for (const scheme of ["light", "dark"]) {
    await page.emulateMedia({ colorScheme: scheme });
    await page.screenshot({ path: `${SHOTS}/${name}-${scheme}.png`, fullPage: true });
  }
  await page.emulateMedia({ colorScheme: "light" });
}

// --- Signing in with a one-time link -------------------------------------------------------
// axe is injected as an inline script, which the pages' CSP forbids: the test context
// bypasses it, and checks separately that every page sends it.
const admin = await browser.newContext({ viewport: { width: 1366, height: 900 }, bypassCSP: true });
const page = await admin.newPage();
const errors = [];
page.on("pageerror", (e) => errors.push(String(e)));
page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });

await page.goto(env("ADMIN_LINK"));
check(new URL(page.url()).pathname === "/", `the link lands on the portfolio (at ${page.url()})`);
check((await page.textContent("h1")) === "Portfolio", "the portfolio's heading");
check((await page.locator(`table.data a[href="/workflows/${WORKFLOW}"]`).count()) === 1, "the workflow is listed");
const cookies = await admin.cookies();
const session = cookies.find((c) => c.name === "sf_session");
check(session && session.httpOnly && session.sameSite === "Strict", "the session cookie is HttpOnly and SameSite=Strict");

const reused = await browser.newContext();
const again = await reused.newPage();
const second = await again.goto(env("ADMIN_LINK"));
check(second.status() === 401 && new URL(again.url()).pathname === "/login", `a link works once (second use: ${second.status()})`);
await reused.close();

// --- Every page renders with data ------------------------------------------------------------
const pages = [
  ["portfolio", "/", "Portfolio"],
  ["workflow", `/workflows/${WORKFLOW}`, WORKFLOW],
  ["runs", "/runs", "Runs"],
  ["run", `/runs/${env("RUN_ID")}`, "Run"],
  ["evals", "/evals", "Evals"],
  ["eval", `/evals/${env("EVAL_B")}`, "Eval"],
  ["compare", `/evals/${env("EVAL_A")}/compare/${env("EVAL_B")}`, "Compare evals"],
  ["audit", "/audit?verify=1", "Audit log"],
  ["policy", "/policy", "AI usage policy"],
  ["weekly", "/reports/weekly", "Weekly operating review"],
];
for (const [name, path, heading] of pages) {
  const response = await page.goto(BASE + path);
  check(response.status() === 200, `${name} (${path}) answers 200, got ${response.status()}`);
  check((response.headers()["content-security-policy"] || "").includes("script-src 'self'"), `${name} sends its Content-Security-Policy`);
  const h1 = (await page.textContent("h1")) || "";
  check(h1.includes(heading), `${name}: heading "${h1.trim()}" contains "${heading}"`);
  await axe(page, name);
  await shoot(page, name);
}
// One case of an eval, reached from the eval's table: its verdicts and its history.
await page.goto(BASE + `/evals/${env("EVAL_B")}`);
const caseHref = await page.locator("table.data tbody th a").first().getAttribute("href");
const caseResponse = await page.goto(BASE + caseHref);
check(caseResponse.status() === 200 && ((await page.textContent("h1")) || "").includes("Case"), `a case's page (${caseHref}) answers 200`);
check((await page.locator("text=label_accuracy").count()) > 0, "the case page shows each scorer's verdict");
const history = await page.locator("table.data").last().locator("tbody tr").count();
check(history === 2, `the case's history lists both evals (saw ${history})`);
await axe(page, "case");
await shoot(page, "case");

await page.goto(BASE + `/workflows/${WORKFLOW}`);
check((await page.locator("svg.chart").count()) >= 4, "the workflow page draws its charts");
check((await page.locator("#config + p, pre.code").count()) > 0, "the workflow page shows its configuration");
await page.goto(BASE + "/audit?verify=1");
check((await page.textContent("p.good")).includes("The chain is intact"), "verify shows the chain's head");

// --- Filtering runs by URL, and the CSV of every match ----------------------------------------
await page.goto(BASE + "/runs?status=held");
const statuses = await page.locator("#runs tbody .status").allTextContents();
const heldShown = Math.min(50, Number(env("HELD")));
check(statuses.length === heldShown && statuses.every((s) => s === "held"),
  `/runs?status=held lists ${heldShown} held runs (a page of the ${env("HELD")}) and nothing else (saw ${statuses.length}: ${[...new Set(statuses)]})`);
check((await page.locator("a[rel=next]").count()) === (Number(env("HELD")) > 50 ? 1 : 0), "a next-page link when more runs match");
check((await page.locator("select[name=status]").inputValue()) === "held", "the filter form shows the URL's filter");
const csv = await page.request.get(BASE + `/runs.csv?workflow=${WORKFLOW}`);
const lines = (await csv.text()).trim().split(/\r?\n/);
check(csv.status() === 200 && csv.headers()["content-type"].startsWith("text/csv"), "the CSV export answers text/csv");
check(lines.length - 1 === Number(env("RUNS")), `the CSV has every run (${lines.length - 1} of ${env("RUNS")}), not one page`);
const compareCsv = await page.request.get(BASE + `/evals/${env("EVAL_A")}/compare/${env("EVAL_B")}?format=csv`);
check(compareCsv.status() === 200 && (await compareCsv.text()).startsWith("case,expected"), "the comparison exports as CSV");

// --- A form without its CSRF token, or from another origin, is refused ---------------------------
const noToken = await page.request.post(BASE + "/review/nothing/approve", {
  form: { note: "x" }, headers: { Origin: BASE },
});
check(noToken.status() === 403, `a form post without the CSRF token is refused (${noToken.status()})`);
const foreign = await page.request.post(BASE + "/review/nothing/approve", {
  form: { note: "x" }, headers: { Origin: "http://evil.example" },
});
check(foreign.status() === 403, `a form post from another origin is refused (${foreign.status()})`);

// --- Reviewing with the keyboard -------------------------------------------------------------
await page.goto(BASE + "/review");
check(new URL(page.url()).pathname === "/review", `opening /review claims nothing and stays on the queue (${page.url()})`);
await axe(page, "review-queue");
await Promise.all([page.waitForURL((url) => /^\/review\/[0-9a-f-]{36}$/.test(url.pathname)), page.keyboard.press("n")]);
const first = new URL(page.url()).pathname.split("/").pop();
check(/^[0-9a-f-]{36}$/.test(first), `n takes the next item (${page.url()})`);
await axe(page, "review");
await shoot(page, "review");
await page.keyboard.press("?");
check(await page.locator("#shortcuts").evaluate((d) => d.open), "? opens the shortcut list");
await page.keyboard.press("Escape");
await Promise.all([page.waitForURL((url) => url.search.includes("done=")), page.keyboard.press("a")]);
check(page.url().includes(`done=${first}`), `a approves and opens the next item (${page.url()})`);
const second_item = new URL(page.url()).pathname.split("/").pop();
check(second_item !== first, "the next item is another one");

// Edit the next one: e opens the form, typing there does not fire shortcuts.
await page.keyboard.press("e");
check(await page.locator("#edit-panel").evaluate((d) => d.open), "e opens the edit form");
const editor = await page.locator("#edit-form").getAttribute("data-editor");
const field = page.locator("#edit-output");
let corrected;
if (editor === "labels") {
  const options = await field.locator("option").allTextContents();
  const current = await field.inputValue();
  corrected = options.find((o) => o !== current);
  await field.selectOption(corrected);
} else {
  corrected = "corrected by the browser test";
  await field.fill(corrected);
}
await page.locator("#edit-note").focus();
await page.keyboard.type("ar"); // a and r typed into a field are text, not shortcuts
check(page.url().includes(second_item) && !(await page.locator("#reject-panel").evaluate((d) => d.open)),
  "shortcuts are off while typing");
await shoot(page, "review-edit");
await Promise.all([page.waitForURL((url) => url.search.includes(`done=${second_item}`)), page.locator("#save-edit").click()]);
check(page.url().includes(`done=${second_item}`), "the correction is saved and the next item opens");

// The released outputs, read through the API.
const api = async (path) => {
  const r = await fetch(BASE + path, { headers: { Authorization: `Bearer ${env("API_KEY")}` } });
  return [r.status, await r.json()];
};
const [s1, approved] = await api(`/v1/runs/${first}`);
check(s1 === 200 && approved.output !== null && approved.review && approved.review.by,
  `the approved run's output is released (${JSON.stringify(approved.review)})`);
const [s2, edited] = await api(`/v1/runs/${second_item}`);
check(s2 === 200 && edited.output === corrected, `the edited run releases the correction (${JSON.stringify(edited.output)} = ${JSON.stringify(corrected)})`);

// The item page after the decision shows the edit as a diff.
await page.goto(BASE + `/runs/${second_item}`);
check((await page.textContent("main")).includes("edit"), "the run page lists the edit decision");

// --- Phone width -------------------------------------------------------------------------------
await page.setViewportSize({ width: 390, height: 844 });
await page.goto(BASE + "/");
await shoot(page, "portfolio-phone");
await page.goto(BASE + "/review");
await shoot(page, "review-phone");
const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
check(overflow <= 1, `the review page fits a phone's width (overflow ${overflow}px)`);

check(errors.length === 0, `no script errors in the pages ${errors.length ? JSON.stringify(errors) : ""}`);

// --- A viewer sees no review queue ---------------------------------------------------------------
const viewerContext = await browser.newContext({ bypassCSP: true });
const viewer = await viewerContext.newPage();
await viewer.goto(env("VIEWER_LINK"));
const links = await viewer.locator("header nav a").allTextContents();
check(!links.includes("Review") && links.includes("Runs"), `a viewer's navigation has no Review (${JSON.stringify(links)})`);
const refused = await viewer.goto(BASE + "/review");
check(refused.status() === 403, `a viewer opening /review is refused (${refused.status()})`);
await viewer.goto(BASE + `/runs/${first}`);
await viewerContext.close();

// --- Signing out ends the session ---------------------------------------------------------------
await page.setViewportSize({ width: 1366, height: 900 });
await page.goto(BASE + "/");
await Promise.all([page.waitForURL(/\/login/), page.locator("header .who button").click()]);
const after = await page.goto(BASE + "/runs");
check(new URL(page.url()).pathname === "/login", `after signing out, pages ask to sign in (${after.status()} ${page.url()})`);
await shoot(page, "login");
await axe(page, "login");

await browser.close();
console.log(failures ? `${failures} check(s) failed` : "all browser checks passed");
process.exit(failures ? 1 : 0);
