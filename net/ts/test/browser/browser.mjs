// Headless Chromium for browser tests: the system's browser driven by playwright-core (which
// never downloads one). $CHROMIUM overrides the executable (default /usr/bin/chromium).

import { existsSync } from "node:fs";

import { chromium } from "playwright-core";

/** Launches headless Chromium; close it with `await browser.close()`. */
export async function launchBrowser() {
  const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
  if (!existsSync(executablePath)) {
    throw new Error(`no Chromium at ${executablePath}: install it (Debian: apt-get install chromium) or set CHROMIUM to its path`);
  }
  return chromium.launch({
    executablePath,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}
