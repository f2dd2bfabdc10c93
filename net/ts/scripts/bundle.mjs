// Bundles the SDK for browser pages (one ES module, minified, deterministic) and copies it
// into each demo's web root; with --check, fails if a committed copy differs from a fresh one.
import { build } from 'esbuild';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const targets = ['../../demo/chatroom/web/oxworld-client.js', '../../demo/arena/web/oxworld-client.js'].map((p) =>
  join(root, p),
);
const result = await build({
  entryPoints: [join(root, 'dist/index.js')],
  bundle: true,
  format: 'esm',
  minify: true,
  legalComments: 'none',
  banner: {
    js: '/* oxworld-client (MIT), built by net/ts/scripts/bundle.mjs; includes @noble/curves, @noble/ciphers and @noble/hashes (MIT, Paul Miller). */',
  },
  write: false,
});
const bundle = result.outputFiles[0].text;
const check = process.argv.includes('--check');
let stale = [];
for (const t of targets) {
  if (check) {
    if (!existsSync(t) || readFileSync(t, 'utf8') !== bundle) stale.push(t);
  } else {
    writeFileSync(t, bundle);
    console.log(`wrote ${t} (${bundle.length} bytes)`);
  }
}
if (stale.length > 0) {
  console.error(`stale SDK bundle in ${stale.join(', ')}: run npm run bundle in net/ts and commit the result`);
  process.exit(1);
}
