// Bundles src/main.ts (and the chunks it loads lazily) into ../static with content hashes, and
// writes ../static/manifest.json: the entry's script and stylesheet, read by web/blueprints/ui.py.
//   node build.mjs            one production build
//   node build.mjs --watch    rebuild on change (development)
import * as esbuild from "esbuild";
import { mkdir, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { gzipSync } from "node:zlib";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const outdir = path.resolve(here, "../static");
const watch = process.argv.includes("--watch");

const options = {
  entryPoints: { main: path.join(here, "src/main.ts") },
  bundle: true,
  splitting: true,
  format: "esm",
  target: ["es2022"],
  minify: !watch,
  sourcemap: watch ? "inline" : false,
  legalComments: "none",
  outdir,
  entryNames: "[name]-[hash]",
  chunkNames: "[name]-[hash]",
  assetNames: "assets/[name]-[hash]",
  metafile: true,
  logLevel: "warning",
  plugins: [
    {
      name: "manifest",
      setup(build) {
        build.onEnd(async (result) => {
          if (!result.metafile) return;
          const manifest = { js: null, css: null, preload: [], files: [] };
          const entry = path.join(here, "src/main.ts");
          const relative = (file) => path.relative(outdir, path.resolve(file)).split(path.sep).join("/");
          for (const [file, info] of Object.entries(result.metafile.outputs)) {
            const rel = relative(file);
            manifest.files.push({ path: rel, bytes: info.bytes });
            // Lazily imported modules are entry points too: only main.ts is the page's.
            if (info.entryPoint && path.resolve(info.entryPoint) === entry) {
              manifest.js = rel;
              if (info.cssBundle) manifest.css = relative(info.cssBundle);
              // Chunks main imports statically: preloaded so they download in parallel.
              manifest.preload = info.imports
                .filter((i) => i.kind === "import-statement" && !i.external)
                .map((i) => relative(i.path));
            }
          }
          manifest.files.sort((a, b) => a.path.localeCompare(b.path));
          // Precompressed copies: the server sends them to browsers that accept gzip.
          for (const file of manifest.files) {
            if (!/\.(js|css)$/.test(file.path)) continue;
            const full = path.join(outdir, file.path);
            const gz = gzipSync(await readFile(full), { level: 9 });
            await writeFile(`${full}.gz`, gz);
            file.gzip_bytes = gz.length;
          }
          await writeFile(path.join(outdir, "manifest.json"), JSON.stringify(manifest, null, 2));
          if (watch) console.log(`built ${manifest.js}`);
        });
      },
    },
  ],
};

// Old hashed files would pile up: start from an empty output folder.
await rm(outdir, { recursive: true, force: true });
await mkdir(outdir, { recursive: true });
if (watch) {
  const context = await esbuild.context(options);
  await context.watch();
} else {
  const result = await esbuild.build(options);
  const manifest = JSON.parse(await readFile(path.join(outdir, "manifest.json"), "utf8"));
  const total = manifest.files.reduce((n, f) => n + f.bytes, 0);
  const gzipped = manifest.files.reduce((n, f) => n + (f.gzip_bytes ?? 0), 0);
  const files = await readdir(outdir, { recursive: true });
  console.log(
    `web/static: ${files.length} files, ${(total / 1024).toFixed(0)} KiB (${(gzipped / 1024).toFixed(0)} KiB gzipped)`,
  );
}
