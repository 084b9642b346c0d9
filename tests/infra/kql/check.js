// Parses and semantically checks KQL queries with Microsoft's Kusto language service
// (npm @kusto/language-service-next, the Kusto.Language library compiled to JavaScript), against the
// schema of the tables they query. Offline: the schema is a local JSON file.
//
//   node tests/infra/kql/check.js < queries.json
//
// stdin:  {"schema": "<path to a schema JSON>", "queries": [{"id": "...", "text": "..."}]}
// stdout: {"results": [{"id": "...", "diagnostics": [{"code", "severity", "start", "length", "message"}]}]}
// Every diagnostic the service reports is returned; the caller (tests/infra/kql_queries.py) decides
// which severities fail. Exit status 2 if the input cannot be read.
'use strict';

const fs = require('fs');

require('@kusto/language-service-next/bridge.min.js');
require('@kusto/language-service-next/Kusto.Language.Bridge.min.js');

/* global Kusto */
const Language = Kusto.Language;
const Symbols = Language.Symbols;

function globalsFor(schemaPath) {
  const schema = JSON.parse(fs.readFileSync(schemaPath, 'utf8'));
  const common = schema._common || {};
  const tables = Object.entries(schema.tables).map(([name, own]) => {
    const columns = Object.entries({ ...common, ...own }).map(([column, type]) => `['${column}']:${type}`);
    // TableSymbol(name, "(col:type, ...)", description)
    return new Symbols.TableSymbol.$ctor7(name, `(${columns.join(', ')})`, null);
  });
  const database = new Symbols.DatabaseSymbol.ctor(schema.database || 'appinsights', tables);
  return Language.GlobalState.Default.WithDatabase(database);
}

function diagnosticsOf(text, globals) {
  const code = Language.KustoCode.ParseAndAnalyze(text, globals);
  const found = code.GetDiagnostics();
  const out = [];
  for (let i = 0; i < found.Count; i += 1) {
    const item = found.getItem(i);
    out.push({
      code: item.Code,
      severity: String(item.Severity),
      start: item.Start,
      length: item.Length,
      message: item.Message,
    });
  }
  return out;
}

function main() {
  let input;
  try {
    input = JSON.parse(fs.readFileSync(0, 'utf8'));
  } catch (error) {
    process.stderr.write(`kql check: cannot read the queries from stdin: ${error.message}\n`);
    process.exit(2);
  }
  const globals = globalsFor(input.schema);
  const results = input.queries.map((query) => ({ id: query.id, diagnostics: diagnosticsOf(query.text, globals) }));
  process.stdout.write(JSON.stringify({ results }));
}

main();
