// `--ca-file`: extra certificate authorities the HTTP engine trusts for https origins (a company
// CA, a self-hosted mirror's own CA). Node's `ca` option replaces the default roots, so the
// files are added to Node's default list (its bundled roots plus NODE_EXTRA_CA_CERTS).

import { readFileSync } from 'node:fs';
import { getCACertificates } from 'node:tls';

/** The certificates to trust, or undefined (Node's defaults) when no file is given. Throws a clear error for an unusable file. */
export function loadCaFiles(paths: readonly string[]): string[] | undefined {
  if (paths.length === 0) return undefined;
  const extra: string[] = [];
  for (const path of paths) {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (e) {
      throw new Error(
        `--ca-file ${path}: cannot read it (${(e as NodeJS.ErrnoException).code ?? String(e)})`,
      );
    }
    const pems = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g);
    if (pems === null) throw new Error(`--ca-file ${path}: no PEM certificate in it`);
    extra.push(...pems);
  }
  return [...getCACertificates('default'), ...extra];
}
