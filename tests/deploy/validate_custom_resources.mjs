// Validates custom resources (a JSON array on stdin) against the Prometheus Operator's CRD schemas,
// as compiled by @kubernetes-models/prometheus-operator; exits 1 if any object is invalid.
// Run from the folder whose node_modules holds the package (.tools/npm).
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const docs = JSON.parse(readFileSync(0, "utf8"));
let failed = false;
for (const doc of docs) {
  const module = `${process.cwd()}/node_modules/@kubernetes-models/prometheus-operator/${doc.apiVersion}/${doc.kind}.js`;
  let Model;
  try {
    Model = (await import(pathToFileURL(module)))[doc.kind];
  } catch {
    console.log(`no schema for ${doc.apiVersion} ${doc.kind}`);
    failed = true;
    continue;
  }
  try {
    new Model(doc).validate();
    console.log(`valid ${doc.kind}/${doc.metadata.name}`);
  } catch (error) {
    console.log(`invalid ${doc.kind}/${doc.metadata.name}: ${error.message}`);
    failed = true;
  }
}
process.exit(failed ? 1 : 0);
